"""Replaying the measured vLLM run: reading it, the engine it implies, the comparison."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from validate.measured import (
    SHIPPED,
    gpu_of,
    read_run,
    replay,
    run_folder,
    setup,
    statistics,
    to_dataset,
)


@pytest.fixture(scope="module")
def shipped():
    return read_run(run_folder(SHIPPED), SHIPPED)


@pytest.fixture(scope="module")
def shipped_replay(shipped):
    return replay(shipped)


def test_measured_statistics_match_what_the_runs_publishers_reported(shipped):
    """Independent reference: LLMServingSim's authors' own summary of this vLLM run
    (run/peer_simulator_summary.txt, the 'vLLM' column, ms to 0.1). Catches a wrong TTFT
    origin (arrival_time instead of queued_ts), a TPOT over O instead of O - 1 tokens, or
    percentiles at the wrong probability."""
    ttft, tpot, e2e = (statistics(x) for x in (shipped.ttft_s, shipped.tpot_s, shipped.e2e_s))
    ms = {k: round(v * 1e3, 1) for k, v in ttft.items()}
    assert ms == {"mean": 7097.2, "p50": 9442.7, "p90": 16852.7, "p99": 19755.3}
    assert round(tpot["mean"] * 1e3, 1) == 32.5 and round(tpot["p99"] * 1e3, 1) == 37.3
    assert round(e2e["mean"] * 1e3, 1) == 28200.7 and round(e2e["p90"] * 1e3, 1) == 35450.7
    assert len(shipped.arrival_s) == 300 and shipped.arrival_s[0] == 0.0
    assert np.all(np.diff(shipped.arrival_s) >= 0)


def test_the_replayed_engine_is_the_measured_ones(shipped):
    """Settings from meta.json; KV capacity by hand: 97,887 MiB x 0.9 less the 2 GiB
    reserve less Llama-3.1-8B's bf16 weights, over 2 x 32 layers x 8 heads x 128 x 2 bytes."""
    s = setup(shipped)
    inst = s.cluster.instance
    assert (inst.max_num_seqs, inst.max_num_batched_tokens, inst.policy) == (128, 2048,
                                                                              "chunked")
    assert s.cluster.instances == 1 and s.cluster.first_token == "prefill"
    params = 128256 * 4096 * 2 + 32 * (4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336)
    kv = math.floor((97887 * 2**20 * 0.9 - 2**31 - 2 * params) / (2 * 32 * 8 * 128 * 2))
    assert s.kv_capacity_tokens == kv == inst.kv_capacity_tokens
    assert gpu_of("RTXPRO6000") == "rtx-pro-6000"
    with pytest.raises(ValueError, match="no GPU of that name"):
        gpu_of("TPUv9")


def test_replay_errors_are_what_the_docs_report(shipped_replay):
    """The replay's accuracy as measured when it was built (docs/measured.md quotes it):
    a regression guard with room for platform rounding, not a target. TPOT within 8 % at
    mean, P50 and P90; TTFT within 25 % at the mean; no preemption (the KV cache holds
    every request with 128 running)."""
    ds = to_dataset([shipped_replay])
    e = ds.rel_error.sel(run=SHIPPED)
    for s in ("mean", "p50", "p90"):
        assert abs(float(e.sel(metric="tpot_s", statistic=s))) < 0.08
    assert abs(float(e.sel(metric="ttft_s", statistic="mean"))) < 0.25
    assert int(ds.preemptions.sel(run=SHIPPED)) == 0
    # the dataset's error is simulated / measured - 1 of its own columns
    np.testing.assert_allclose(ds.rel_error, ds.simulated / ds.measured - 1)


def test_per_request_replay_tracks_the_measurement(shipped_replay):
    """Per request, simulated and measured TTFT and TPOT correlate (> 0.95): the replay
    reproduces which requests waited, not only the averages."""
    r = shipped_replay
    for sim, meas in ((r.ttft_s, r.run.ttft_s), (r.tpot_s, r.run.tpot_s)):
        assert np.corrcoef(sim, meas)[0, 1] > 0.95


def _copy_run(tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run_folder(SHIPPED), dst)
    return dst


@pytest.mark.parametrize(("line", "message"), [
    ('{"input_toks": 0, "output_toks": 5, "queued_ts": 1, "first_token_ts": 2, '
     '"last_token_ts": 3}', r"requests.jsonl:1: input_toks = 0: must be a whole number"),
    ('{"input_toks": 5, "output_toks": 5, "queued_ts": 1, "first_token_ts": 0.5, '
     '"last_token_ts": 3}', r"requests.jsonl:1: timestamps out of order"),
    ('{"input_toks": 5, "output_toks": 5, "queued_ts": "x", "first_token_ts": 2, '
     '"last_token_ts": 3}', r"requests.jsonl:1: queued_ts = 'x'"),
    ("not json", r"requests.jsonl:1: not JSON"),
])
def test_bad_runs_are_refused_by_line_and_field(tmp_path, line, message):
    d = _copy_run(tmp_path)
    (d / "run" / "requests.jsonl").write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        read_run(d)


def test_one_token_requests_have_no_tpot(tmp_path):
    d = _copy_run(tmp_path)
    recs = [{"input_toks": 10, "output_toks": 1, "queued_ts": 5.0, "first_token_ts": 5.5,
             "last_token_ts": 5.5},
            {"input_toks": 10, "output_toks": 3, "queued_ts": 4.0, "first_token_ts": 4.2,
             "last_token_ts": 4.6}]
    (d / "run" / "requests.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    run = read_run(d)
    # sorted by queue time, from 0
    np.testing.assert_allclose(run.arrival_s, [0.0, 1.0])
    np.testing.assert_allclose(run.tpot_s, [0.2, np.nan])
    np.testing.assert_allclose(run.ttft_s, [0.2, 0.5])


def test_validate_measured_end_to_end(tmp_path):
    """``python -m validate +validation=measured``: the table, dataset.nc, the report
    that opens with its headline; a bad run folder stops with one line."""
    cmd = [sys.executable, "-m", "validate", "+validation=measured",
           f"hydra.run.dir={tmp_path / 'out'}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "TTFT     mean" in res.stdout and "measured ms" in res.stdout
    ds = xr.load_dataset(tmp_path / "out" / "dataset.nc")
    assert ds.attrs["kind"] == "measured" and list(ds.run.values) == [SHIPPED]
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.splitlines()[2].startswith(f"**{SHIPPED}: simulated vs measured, TTFT mean")
    assert (tmp_path / "out" / "figures" / "cdf_0.png").stat().st_size > 10_000
    bad = subprocess.run(cmd[:-1] + [f"hydra.run.dir={tmp_path / 'bad'}",
                                     f"validation.measured=[{tmp_path / 'nope'}]"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "not a shipped run" in bad.stderr
    bad = subprocess.run(cmd[:-1] + [f"hydra.run.dir={tmp_path / 'bad2'}",
                                     "validation.measured_step_overhead_s=-0.001"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert "validation.measured_step_overhead_s = -0.001: must be in [0, 1) s" in bad.stderr


def test_a_step_overhead_given_apart_lengthens_tpot(shipped):
    """1 ms more a step: every TPOT longer, by about 1 ms a token (one step a token; the
    batches the slower steps build differ a little, so 0.65 to 1.4 ms, median 1 ms)."""
    base, slow = replay(shipped), replay(shipped, step_overhead_s=1e-3)
    d = slow.tpot_s - base.tpot_s
    assert np.all(d > 0) and np.median(d) == pytest.approx(1e-3, rel=0.1)
    assert "plus 1 ms a step given apart" in slow.setup.notes[-1]
