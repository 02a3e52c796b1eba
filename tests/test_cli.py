"""``python -m simulation``: JSON on stdout, overrides, files, and clean errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FAST = ["sim_seconds=200", "warmup_seconds=20"]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulation", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_default_prints_json_and_leaves_no_output_folder(tmp_path):
    proc = run(*FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["mode"] == "mono"
    s = out["stats"]
    assert 0 < s["p50_ttft_s"] <= s["p90_ttft_s"] <= s["p99_ttft_s"]
    assert s["stable"] is True
    assert list(tmp_path.iterdir()) == []


def test_overrides_and_dump(tmp_path):
    dump = tmp_path / "ttft.json"
    proc = run(*FAST, "mode=disagg", "arrival.rate_per_s=3", f"dump_ttft={dump}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["config"]["arrival"]["rate_per_s"] == 3.0
    samples = json.loads(dump.read_text())
    assert len(samples) == out["stats"]["n_measured"]
    assert min(samples) > 0


def test_both_compares_on_same_requests():
    proc = run(*FAST, "mode=both", "replications=2")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["mono"]["n_requests"] == out["disagg"]["n_requests"]
    rd = out["relative_difference"]["mean_ttft_s"]
    expected = out["disagg"]["mean_ttft_s"] / out["mono"]["mean_ttft_s"] - 1
    assert rd == pytest.approx(expected, rel=1e-12)
    assert "mean_ttft_s_ci_low" in out["mono"]


def test_config_file_with_override():
    proc = run("config=examples/p50_p90.yaml", "sim_seconds=200", "warmup_seconds=20",
               "arrival.rate_per_s=1.5")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["mode"] == "disagg"
    assert out["config"]["prompt_tokens"] == {"mode": "p50_p90", "p50": 400, "p90": 1500,
                                              "min_value": 8}
    assert out["config"]["arrival"]["rate_per_s"] == 1.5


@pytest.mark.parametrize("name", ["light_load_disagg", "heavy_load_mono"])
def test_scenarios_run(name):
    proc = run(*FAST, f"scenario={name}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mode"] == name.split("_")[-1]


def test_token_mode_switch_on_command_line():
    proc = run(*FAST, "prompt_tokens=real_mean_std", "prompt_tokens.mean=1000",
               "prompt_tokens.std=400")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["config"]["prompt_tokens"]["mode"] == "real_mean_std"


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["arrival.rate_per_s=-1"], "arrival.rate_per_s = -1.0: must be > 0",
                 id="negative rate"),
    pytest.param(["warmup_seconds=900", "sim_seconds=600"],
                 "warmup_seconds = 900.0: must be < sim_seconds = 600.0", id="warm-up too long"),
    pytest.param(["cluster_disagg.decode_gpus=0"], "cluster_disagg.decode_gpus = 0",
                 id="zero GPUs"),
    pytest.param(["prompt_tokens=p50_p90", "prompt_tokens.p50=500", "prompt_tokens.p90=100"],
                 "prompt_tokens.p90 = 100.0: must be > prompt_tokens.p50 = 500.0",
                 id="p90 below p50"),
    pytest.param(["output_tokens=real_mean_std", "output_tokens.mean=100"],
                 "output_tokens.std is missing", id="missing std"),
    pytest.param(["prompt_tokens=log"], "prompt_tokens.mean is missing: mode 'log' takes "
                 "mean and sigma", id="log group without its values"),
    pytest.param(["config=no/such.yaml"], "config = 'no/such.yaml': no such file",
                 id="missing file"),
    # a '+' forces a key past Hydra's check: a typo would be silently ignored (issue 13)
    pytest.param(["+arival.rate_per_s=3"], "arival: no such setting (misspelled?",
                 id="plus typo top level"),
    pytest.param(["+arrival.rat=3"], "arrival.rat: no such setting (misspelled? a '+' prefix "
                 "adds keys Hydra would refuse); settings of arrival: burst_cycle_s",
                 id="plus typo nested"),
    # counts whose memory or work has no bound (issue 13)
    pytest.param(["cluster_mono.num_gpus=100000000"], "cluster_mono.num_gpus = 100000000: "
                 "must be a whole number in [1, 1000000]", id="too many GPUs"),
    pytest.param(["serving=batched", "batched_disagg.decode_instances=20000"],
                 "batched_disagg.decode_instances = 20000: must be a whole number in [1, 10000]",
                 id="too many instances"),
    # laws and speeds whose arithmetic overflows or underflows downstream (issue 13)
    pytest.param(["prompt_tokens.sigma=50"], "prompt_tokens.sigma = 50.0: gives sigma of log "
                 "tokens 50; must give <= 4", id="sigma overflow"),
    pytest.param(["output_tokens=real_mean_std", "output_tokens.mean=100",
                  "output_tokens.std=1e200"], "output_tokens.std = 1e+200: gives sigma of log "
                 "tokens 30.2; must give <= 4", id="std overflow"),
    pytest.param(["prompt_tokens=p50_p90", "prompt_tokens.p50=100", "prompt_tokens.p90=1e300"],
                 "prompt_tokens.p90 = 1e+300: gives sigma", id="p90 overflow"),
    pytest.param(["prompt_tokens.mean=22", "prompt_tokens.sigma=1"], "prompt_tokens.mean = "
                 "22.0: gives a mean of 5.91e+09 tokens; must give <= 1e+09", id="mean too big"),
    pytest.param(["cluster_mono.prefill_tokens_per_s=1e-300"], "cluster_mono.prefill_tokens_per_s"
                 " = 1e-300: must be in [0.001, 1e+12]", id="rate underflow"),
    pytest.param(["cluster_disagg.decode_tokens_per_s=1e300"], "cluster_disagg.decode_tokens_per_"
                 "s = 1e+300: must be in [0.001, 1e+12]", id="rate overflow"),
])
def test_bad_value_is_one_line_without_traceback(args, message):
    proc = run(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"error: {proc.stderr.strip()[7:]}"
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_value_in_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster_mono:\n  num_gpus: -4\n")
    proc = run(f"config={bad}")
    assert proc.returncode == 2
    assert "cluster_mono.num_gpus = -4: must be a whole number in [1, 1000000]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_typo_and_wrong_type_are_refused_by_the_schema():
    for args in (["arival.rate_per_s=3"], ["arrival.rate_per_s=abc"]):
        proc = run(*args)
        assert proc.returncode != 0
        assert "arrival.rate_per_s" in proc.stderr or "arival" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_reader_leaving_early_is_not_an_error():
    """``python -m simulation | head -1``: no traceback, exit 0."""
    proc = subprocess.run(f"{sys.executable} -m simulation {' '.join(FAST)} | head -1",
                          shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          executable="/bin/bash")
    assert proc.stdout.strip() == "{"
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_config_file_refuses_group_choices():
    proc = run("config=examples/p50_p90.yaml", "scenario=heavy_load_mono")
    assert proc.returncode == 2
    assert "with config=FILE only key=value overrides of the model apply" in proc.stderr


BATCHED = ["serving=batched", "sim_seconds=120", "warmup_seconds=20"]


def test_batched_both_prints_the_seed_layout_plus_tpot_itl_e2e_and_slo():
    proc = run(*BATCHED, "scenario=distserve_opt13b", "sim_seconds=120", "warmup_seconds=20",
               "replications=2")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["mode"] == "both" and out["engine"] == "fast"
    for arch in ("mono", "disagg"):
        s = out[arch]
        for key in ("mean_ttft_s", "p99_ttft_s", "mean_tpot_s", "p90_tpot_s", "mean_itl_s",
                    "p99_itl_s", "mean_e2e_s", "slo_attainment", "slo_attainment_ttft",
                    "slo_attainment_tpot", "throughput_tokens_per_s", "mean_ttft_s_ci_low"):
            assert key in s, f"{arch} lacks {key}"
        assert 0 < s["p50_ttft_s"] <= s["p90_ttft_s"] <= s["p99_ttft_s"]
        assert s["stable"] is True
    assert out["mono"]["n_requests"] == out["disagg"]["n_requests"]  # the same requests
    assert "utilisation_colocated" in out["mono"] and "kv_occupancy_decode" in out["disagg"]
    assert out["config"]["batched_mono"]["instance"]["policy"] == "prefill_priority"
    assert "cluster_mono" not in out["config"]  # the seed model's section is not printed


@pytest.mark.parametrize("serving", ["fifo", "batched"])
def test_trace_file_runs_on_either_serving_model(serving):
    proc = run(f"serving={serving}", "mode=both", "trace=examples/trace_distserve.json",
               "warmup_seconds=0")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["mono"]["n_requests"] == out["disagg"]["n_requests"] == 6


@pytest.mark.parametrize(("args", "message"), [
    (["batched_mono.instance.kv_capacity_tokens=8"],
     "batched_mono.instance.kv_capacity_tokens = 8: must be >= block_size = 16"),
    (["profile=nope"], "profile = 'nope': unknown"),
    (["batched_mono.instances=0"],
     "batched_mono.instances = 0: must be a whole number in [1, 10000]"),
    (["batched_disagg.link_bandwidth_bytes_per_s=-1"],
     "batched_disagg.link_bandwidth_bytes_per_s = -1.0: must be > 0"),
    (["batched_mono.instance.kv_capacity_tokens=64"],
     "needs"),  # a request that can never fit: refused by name
    (["trace=examples/trace_distserve.json"], "warmup_seconds = 20.0: must be in [0, the "
     "trace's last arrival"),
])
def test_batched_bad_values_stop_with_one_line(args, message):
    proc = run(*BATCHED, *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_batched_engines_print_the_same_statistics():
    """The compiled engine (default) and the SimPy model: the same JSON, number for number."""
    args = (*BATCHED, "scenario=distserve_opt13b", "sim_seconds=120", "warmup_seconds=20")
    fast, simpy = run(*args), run(*args, "engine=simpy")
    assert fast.returncode == simpy.returncode == 0, fast.stderr + simpy.stderr
    a, b = json.loads(fast.stdout), json.loads(simpy.stdout)
    assert (a["engine"], b["engine"]) == ("fast", "simpy")
    assert a["mono"] == b["mono"] and a["disagg"] == b["disagg"]


def test_analytic_batched_estimate_and_refusals():
    ok = subprocess.run([sys.executable, "-m", "analytic", "scenario=distserve_opt13b",
                         "mode=mono"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    est = json.loads(ok.stdout)["estimate"]
    assert est["stable"] is True and 0 < est["mean_tpot_s"] < est["mean_ttft_s"] < 1
    assert est["stability_limit_rps"] > 4.0
    chunked = subprocess.run([sys.executable, "-m", "analytic", "serving=batched",
                              "output=json"], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert chunked.returncode == 0, chunked.stderr
    assert json.loads(chunked.stdout)["method"].startswith("colocated_chunked")
    bad = subprocess.run([sys.executable, "-m", "analytic", "serving=batched",
                          f"profile={ROOT / 'tests' / 'data' / 'mixed_profile.yaml'}"],
                         cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "no affine prefill step" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_batched_validation_refuses_bad_input_before_any_work(tmp_path):
    """``serving=batched`` validates (tests/test_validate_batched.py); a bad value still
    stops it in one line before anything runs."""
    proc = subprocess.run([sys.executable, "-m", "validate", "scenario=distserve_opt13b",
                           "replications=1", f"hydra.run.dir={tmp_path}/run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: replications = 1: must be >= 2 for confidence intervals")
    assert not (tmp_path / "run" / "result.nc").exists()


def test_records_only_for_dump_ttft_and_the_numbers_agree(tmp_path):
    """Without dump_ttft the run streams (bounded memory, no per-request records); with
    it the records are kept and dumped per architecture. The statistics agree either way
    (to the last bits of a sum's order)."""
    dump = tmp_path / "ttft.json"
    kept = run(*FAST, "mode=both", "replications=2", f"dump_ttft={dump}")
    streamed = run(*FAST, "mode=both", "replications=2")
    assert kept.returncode == 0 and streamed.returncode == 0, kept.stderr + streamed.stderr
    a, b = json.loads(kept.stdout), json.loads(streamed.stdout)
    samples = json.loads(dump.read_text())
    for arch in ("mono", "disagg"):
        assert len(samples[arch]) == 2 * a[arch]["n_measured"]  # two replications
        for k, v in a[arch].items():
            if isinstance(v, float):
                assert b[arch][k] == pytest.approx(v, rel=1e-12, nan_ok=True), (arch, k)
