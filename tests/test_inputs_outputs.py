"""Bad inputs and output files (issue 13): refused before work with one line naming the
field, files written with the umask's permissions, nothing silently empty."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fileio import atomic_write_text, check_writable

ROOT = Path(__file__).resolve().parent.parent


def sim(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulation", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_output_files_honour_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "out.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == mode


def test_unwritable_output_is_refused_before_the_run(tmp_path):
    with pytest.raises(ValueError, match="dump_ttft = .*: is a directory"):
        check_writable(tmp_path, "dump_ttft")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"dump_ttft = .*file/x.json': cannot write there"):
        check_writable(blocker / "x.json", "dump_ttft")
    proc = sim("sim_seconds=200", "warmup_seconds=20", f"dump_ttft={blocker / 'x.json'}")
    assert proc.returncode == 2 and proc.stdout == ""  # stopped before printing results
    assert proc.stderr.count("\n") == 1 and "cannot write there" in proc.stderr


def test_a_run_with_no_measured_request_says_so():
    proc = sim("arrival.rate_per_s=0.0001", "sim_seconds=1000", "warmup_seconds=100")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["stats"]["n_measured"] == 0
    assert "warning: no request arrived in the measured window" in proc.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\n1,abc,5\n",
     "row 3, column prompt_tokens = 'abc': not a number"),
    ("arrival_s,prompt_tokens,output_tokens\n0,10,5\n0,10,-5\n",
     "row 3, column output_tokens = '-5': must be a finite number > 0 (tokens)"),
    ("arrival_s,prompt_tokens,output_tokens\n-1,10,5\n",
     "row 2, column arrival_s = '-1': must be a finite number >= 0 (s)"),
    ("arrival_s,prompt,output_tokens\n0,10,5\n", "no column prompt_tokens or prompt_len"),
])
def test_malformed_traces_name_file_row_and_column(tmp_path, text, message):
    f = tmp_path / "t.csv"
    f.write_text(text)
    proc = sim(f"trace={f}", "warmup_seconds=0")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "t.csv" in proc.stderr and message in proc.stderr


def test_a_trace_arriving_all_at_once_is_measured(tmp_path):
    """Two requests at t = 0: accepted, both measured; 10 prompt tokens at 8,000 tokens/s
    then one decode token at 2,000 tokens/s, no wait on 4 GPUs: TTFT 1.75 ms each."""
    f = tmp_path / "t.csv"
    f.write_text("arrival_s,prompt_tokens,output_tokens\n0,10,5\n0,10,5\n")
    proc = sim(f"trace={f}", "warmup_seconds=0")
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)["stats"]
    assert st["n_measured"] == 2 and st["mean_ttft_s"] == pytest.approx(10 / 8000 + 1 / 2000)


def test_reports_refuses_what_is_not_a_dataset(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_text("not a dataset")
    proc = subprocess.run([sys.executable, "-m", "reports", str(bad)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "not a readable netCDF dataset" in proc.stderr


# ------------------------------------------------------------------ memory, before work
def test_a_run_larger_than_memory_is_refused_before_work(monkeypatch):
    """The estimate (bytes a request measured with ru_maxrss, in simulation.runner) is
    compared with the memory available before anything is generated; a run past 80 % of
    it is refused with the field, the request count, both sizes and the way out."""
    from dataclasses import replace

    import simulation
    import simulation.runner as runner
    import spec

    cfg = spec.default_config()
    rate = cfg.workload.arrival_rate_per_s
    big = replace(cfg, sim_seconds=4e8 / rate)  # 4 x 10^8 requests a replication
    est = runner.memory_estimate_bytes(big, 2, keep_requests=True, engine="fast")
    assert est == pytest.approx(4e8 * (65 + 105 * 2 * cfg.replications))
    streamed = runner.memory_estimate_bytes(big, 2, keep_requests=False, engine="fast")
    assert streamed == pytest.approx(4e8 * (48 + 32 * 2))
    monkeypatch.setattr(runner, "available_memory_bytes", lambda: 16 * 2**30)
    calls = []
    monkeypatch.setattr(runner, "generate_requests", lambda *a, **k: calls.append(a))
    with pytest.raises(ValueError) as err:
        simulation.compare(big)
    msg = str(err.value)
    assert msg == (f"sim_seconds = {big.sim_seconds:g}: about 400,000,000 requests a "
                   f"replication need about {est / 2**30:,.1f} GiB, more than 80% of the "
                   "16.0 GiB available; shorten sim_seconds, or stream it (engine fast, no "
                   "per-request records: no dump_ttft, or keep_requests=False in Python; 112 "
                   "bytes a request)")
    assert not calls  # refused before any request was drawn
    with pytest.raises(ValueError, match="shorten sim_seconds or lower the rate"):
        simulation.compare(big, keep_requests=False)  # 42 GiB streamed: still too much
    # 80 % of the memory is allowed, a byte more is not
    fits = replace(cfg, sim_seconds=0.8 * 16 * 2**30 / (48 + 32 * 2) / rate * (1 - 1e-9))
    runner.check_memory(fits, 2, keep_requests=False, engine="fast")
    over = replace(cfg, sim_seconds=0.8 * 16 * 2**30 / (48 + 32 * 2) / rate * (1 + 1e-9))
    with pytest.raises(ValueError):
        runner.check_memory(over, 2, keep_requests=False, engine="fast")


def test_available_memory_is_read_from_the_system():
    import simulation.runner as runner

    have = runner.available_memory_bytes()
    assert 2**26 < have < 2**50  # between 64 MiB and 1 PiB


_PEAK = """
import sys, tracemalloc
from dataclasses import replace
import spec, simulation, simulation.runner as runner
keep = sys.argv[1] == "1"
cfg = spec.default_config()
cfg = replace(cfg, sim_seconds=2e6 / cfg.workload.arrival_rate_per_s, warmup_seconds=0.0,
              replications=1)
simulation.compare(replace(cfg, sim_seconds=1000.0), keep_requests=keep)  # compiled first
tracemalloc.start()  # numpy reports its arrays to tracemalloc; numba's compiler is not seen
simulation.compare(cfg, keep_requests=keep)
print(tracemalloc.get_traced_memory()[1], runner.memory_estimate_bytes(cfg, 2, keep_requests=keep,
                                                                     engine="fast"))
"""


@pytest.mark.parametrize("keep", [True, False], ids=["records kept", "streamed"])
def test_memory_estimate_is_the_measured_peak(keep):
    """The bytes a request the estimate uses are measurements: a run of 2 million
    requests of both architectures, in a fresh process, must peak (tracemalloc, which
    a first numba compilation cannot mask as it masks ru_maxrss) within a factor of
    1.5 of the estimate either way (a total per request off by half, or doubled, fails)."""
    proc = subprocess.run([sys.executable, "-c", _PEAK, "1" if keep else "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    measured, estimate = map(float, proc.stdout.split())
    assert estimate / 1.5 <= measured <= estimate * 1.5, (measured, estimate)
