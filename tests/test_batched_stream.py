"""Streamed batched runs (bounded memory) give the whole run's numbers."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import simulation.stream as stream
from simulation import batched_metrics, compare, runner
from simulation.requests import Requests, generate_requests, request_pieces, spawn_seeds
from spec import config_from_mapping

ROOT = Path(__file__).resolve().parents[1]

def _scenario() -> dict:
    """DistServe's OPT-13B setting as shipped (conf/scenario/distserve_opt13b.yaml)."""
    import yaml

    return yaml.safe_load((ROOT / "conf" / "scenario" / "distserve_opt13b.yaml").read_text())


#: stable at 3 to 6 req/s (its header says so for 4)
SCENARIO = _scenario()


@pytest.mark.parametrize("process", [{"process": "poisson"}, {"process": "gamma", "cv": 2.0},
                                     {"process": "mmpp", "burst_ratio": 4.0,
                                      "burst_cycle_s": 20.0}])
def test_request_pieces_are_the_whole_stream(process):
    cfg = config_from_mapping({"arrival": {"rate_per_s": 5.0, **process}})
    ss = spawn_seeds(3, 1)[0]
    whole = generate_requests(cfg.workload, 500.0, ss)
    parts = list(request_pieces(cfg.workload, 500.0, ss, 37))
    assert len(parts) > 20
    for f in ("arrival_s", "prompt_tokens", "output_tokens"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, f) for p in parts]),
                                      getattr(whole, f))


@pytest.mark.parametrize("rate", [3.0, 9.0], ids=["stable", "overloaded"])
def test_streamed_summary_equals_the_whole_runs(rate, monkeypatch):
    """Pieces of 97 requests, a ring of 2 slots to start with and a small output
    buffer (records reach the summary in many batches), measured latencies kept in
    pieces of 50, both architectures; every statistic as the whole run's summary, bit
    for bit (the window's request-seconds are exact sums)."""
    from simulation import batched_fast
    from simulation.batched_fast import simulate_batched_fast

    monkeypatch.setattr(batched_metrics.BatchedSummary, "CHUNK", 50)
    monkeypatch.setattr(batched_fast, "RING", 2)
    monkeypatch.setattr(batched_fast, "OUT_PER_SLOT", 2)
    batches = []
    add = batched_metrics.BatchedSummary.add
    monkeypatch.setattr(batched_metrics.BatchedSummary, "add",
                        lambda s, ids, t: (batches.append(len(ids)), add(s, ids, t))[1])
    cfg = config_from_mapping({**SCENARIO, "mode": "both", "sim_seconds": 400.0,
                               "warmup_seconds": 40.0, "arrival": {"rate_per_s": rate}})
    ss = spawn_seeds(11, 1)[0]
    window = (cfg.warmup_seconds, cfg.sim_seconds)
    streamed = stream.stream_batched_replication(cfg.workload, cfg.sim_seconds, ss,
                                                 cfg.clusters(), window, cfg.quantiles,
                                                 cfg.slo, block=97)
    req = generate_requests(cfg.workload, cfg.sim_seconds, ss)
    for cluster, got in zip(cfg.clusters(), streamed, strict=True):
        times, engine = simulate_batched_fast(req, cluster, window)
        ttft = times.ttft_s.copy()
        want = batched_metrics.summarise_batched(times, engine, window, cfg.quantiles,
                                                 cfg.slo)
        np.testing.assert_array_equal(times.ttft_s, ttft)  # the records are not reordered
        assert got.keys() == want.keys()
        for k, v in want.items():
            assert got[k] == v or (math.isnan(v) and math.isnan(got[k])), k
        assert got["stable"] == (1.0 if rate == 3.0 else 0.0)
        assert got["n_measured"] > 500 and got["mean_preemptions"] >= 0.0
    if rate == 3.0:  # (overloaded, every request is in flight at once: one batch)
        assert len(batches) > 6


def test_runs_without_records_are_streamed_with_the_same_numbers(monkeypatch):
    cfg = config_from_mapping({**SCENARIO, "mode": "both", "sim_seconds": 300.0,
                               "warmup_seconds": 30.0, "replications": 2,
                               "arrival": {"rate_per_s": 4.0}})
    whole = compare(cfg, keep_requests=True)
    calls = []
    real = stream.stream_batched_replication
    monkeypatch.setattr(runner, "stream_batched_replication",
                        lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    streamed = compare(cfg, keep_requests=False)
    assert len(calls) == 2  # one per replication
    for a, b in ((whole.mono, streamed.mono), (whole.disagg, streamed.disagg)):
        assert not b.records and b.engine == "fast"
        for ra, rb in zip(a.replications, b.replications, strict=True):
            assert ra.keys() == rb.keys()
            assert ra == rb or {k for k in ra if ra[k] != rb[k]} == {
                k for k in ra if math.isnan(ra[k]) and math.isnan(rb[k])}


def test_an_overloaded_stream_stops_before_memory_runs_out(monkeypatch):
    """Requests in flight grow without bound when arrivals outpace the cluster: the
    ring refuses to grow past the memory available, naming why."""
    monkeypatch.setattr(runner, "available_memory_bytes", lambda: 2.0**20)
    cfg = config_from_mapping({**SCENARIO, "mode": "mono", "sim_seconds": 2000.0,
                               "warmup_seconds": 0.0, "arrival": {"rate_per_s": 40.0}})
    monkeypatch.setattr(runner, "check_memory", lambda *a, **k: None)  # the run's own check
    with pytest.raises(ValueError, match=r"requests in flight need .* GiB, more than 80% "
                                         r"of the 0\.0 GiB available; the cluster is not "
                                         r"keeping up"):
        from simulation import simulate

        simulate(cfg, keep_requests=False)


def test_a_request_that_can_never_fit_is_refused_by_its_number():
    from simulation.batched_fast import run_batched_fast

    cfg = config_from_mapping({**SCENARIO, "mode": "mono"})
    cluster = cfg.clusters()[0]
    big = cluster.instance.kv_tokens + 1.0
    pieces = [Requests(np.array([0.0, 1.0]), np.array([5.0, 5.0]), np.array([3.0, 3.0])),
              Requests(np.array([2.0]), np.array([big]), np.array([3.0]))]
    with pytest.raises(ValueError, match=r"^request 2 \(prompt"):
        run_batched_fast(pieces, cluster, (0.0, 10.0), lambda rec: None)


_PEAK = """
import sys, tracemalloc
from dataclasses import replace
import spec, simulation, simulation.runner as runner
sys.path.insert(0, "tests")
from test_batched_stream import SCENARIO
n = 4e5
cfg = spec.config_from_mapping({**SCENARIO, "mode": "both", "replications": 1,
                                "warmup_seconds": 0.0, "arrival": {"rate_per_s": 6.0}})
cfg = replace(cfg, sim_seconds=n / 6.0)
simulation.compare(replace(cfg, sim_seconds=500.0), keep_requests=False)  # compiled first
tracemalloc.start()  # numpy reports its arrays to tracemalloc; numba's compiler is not seen
simulation.compare(cfg, keep_requests=False)
print(tracemalloc.get_traced_memory()[1],
      runner.memory_estimate_bytes(cfg, 2, keep_requests=False, engine="fast"))
"""


def test_memory_estimate_of_a_streamed_batched_run_is_its_measured_peak():
    """400,000 requests on both architectures, streamed: the peak (tracemalloc, in a fresh
    process) within a factor of 1.5 of the estimate (the 300 bytes a request of the
    whole-array engine would be 6 times too many)."""
    proc = subprocess.run([sys.executable, "-c", _PEAK], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    measured, estimate = map(float, proc.stdout.split())
    assert estimate / 1.5 <= measured <= estimate * 1.5, (measured, estimate)


def test_exact_sums_are_exact_and_add_up_by_pieces():
    """Against math.fsum (Shewchuk's exactly rounded sum) on values spanning 600 orders
    of magnitude, both signs, with cancellation; the sum of pieces' exact sums is the
    whole's."""
    from fractions import Fraction

    rng = np.random.default_rng(2)
    x = rng.standard_normal(20_000) * 10.0 ** rng.integers(-300, 300, 20_000)
    x = np.concatenate((x, -x[:5000], [1e300, 1.0, -1e300, 0.0, 5e-324]))
    rng.shuffle(x)
    whole = batched_metrics.exact_sum(x)
    assert float(whole) == math.fsum(x.tolist())
    assert sum((batched_metrics.exact_sum(p) for p in np.array_split(x, 37)),
               Fraction(0)) == whole
    assert batched_metrics.exact_sum(np.array([0.1] * 10)) == 10 * Fraction(0.1)
    assert batched_metrics.exact_sum(np.array([])) == 0
