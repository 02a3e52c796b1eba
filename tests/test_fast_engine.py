"""The fast engine equals the SimPy model request by request (same request streams)."""

import numpy as np
import pytest

from simulation import Requests, generate_requests, run_requests, simulate
from spec import DisaggregatedCluster, MonolithicCluster, TokenDist, config_from_mapping

COLUMNS = ("prefill_wait_s", "decode_wait_s", "ttft_s", "e2e_s", "prefill_start_s",
           "decode_start_s")


def _assert_same(a, b):
    for col in COLUMNS:
        x, y = getattr(a, col), getattr(b, col)
        assert np.allclose(x, y, rtol=1e-9, atol=1e-12), \
            f"{col} differs at {np.flatnonzero(~np.isclose(x, y, rtol=1e-9, atol=1e-12))[:5]}"


CLUSTERS = [
    pytest.param(MonolithicCluster(4, 8000.0, 2000.0), id="mono 4"),
    pytest.param(MonolithicCluster(1, 8000.0, 2000.0), id="mono 1"),
    pytest.param(DisaggregatedCluster(2, 2, 8000.0, 2000.0), id="disagg 2+2"),
    pytest.param(DisaggregatedCluster(1, 3, 6000.0, 2500.0, 2e-5), id="disagg with transfer"),
]


@pytest.mark.parametrize("cluster", CLUSTERS)
@pytest.mark.parametrize("rate", [2.0, 4.5])
def test_random_tokens_equal_simpy(cluster, rate):
    wl = config_from_mapping({}).workload.with_rate(rate)
    req = generate_requests(wl, 2000.0, 11)
    _assert_same(run_requests(req, cluster, engine="fast"),
                 run_requests(req, cluster, engine="simpy"))


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_fixed_tokens_with_ties_equal_simpy(cluster):
    """Fixed lengths and arrivals on a coarse grid make many exact ties (equal arrival,
    equal prefill end, equal ready time): the decode order must break them as SimPy."""
    rng = np.random.default_rng(3)
    arrivals = np.sort(rng.integers(0, 400, 1500)) * 0.125
    req = Requests(arrivals, np.full(1500, 1000.0), np.full(1500, 250.0))
    _assert_same(run_requests(req, cluster, engine="fast"),
                 run_requests(req, cluster, engine="simpy"))
    mixed = Requests(arrivals, rng.choice([500.0, 1000.0], 1500), np.full(1500, 250.0))
    _assert_same(run_requests(mixed, cluster, engine="fast"),
                 run_requests(mixed, cluster, engine="simpy"))


def test_summaries_identical_through_the_runner():
    cfg = config_from_mapping({"sim_seconds": 600.0, "warmup_seconds": 60.0,
                               "replications": 2, "mode": "disagg",
                               "prompt_tokens": {"mode": "real_mean_std", "mean": 800.0,
                                                 "std": 500.0}})
    a, b = simulate(cfg, engine="fast"), simulate(cfg, engine="simpy")
    for ra, rb in zip(a.replications, b.replications, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], rel=1e-9, abs=1e-12), k


def test_unknown_engine_is_refused():
    req = Requests([0.0], [1.0], [1.0])
    with pytest.raises(ValueError, match="engine = 'gpu': must be one of simpy, fast"):
        run_requests(req, MonolithicCluster(1, 1.0, 1.0), engine="gpu")


def test_fixed_token_law_still_fixed():
    assert TokenDist.fixed(7).sample(np.random.default_rng(0), 3).tolist() == [7, 7, 7]


@pytest.mark.parametrize("servers", [1, 3, 64, 4096])
def test_compiled_recursion_equals_the_heapq_reference(servers):
    """The numba heap and Python's heapq give bit-identical start times."""
    from simulation.fast import compiled_kernel, fifo_starts_python

    rng = np.random.default_rng(servers)
    ready = np.cumsum(rng.exponential(1.0 / (0.9 * servers), 20_000))
    hold = rng.lognormal(0.0, 1.2, 20_000)
    assert np.array_equal(compiled_kernel()(ready, hold, np.zeros(servers)),
                          np.asarray(fifo_starts_python(ready.tolist(), hold.tolist(),
                                                        servers)))


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_python_and_compiled_recursions_give_the_same_runs(cluster):
    """The engine's two implementations (heapq, numba) agree bit for bit, request by
    request, through the runner."""
    from simulation.fast import set_backend

    wl = config_from_mapping({}).workload.with_rate(4.0)
    req = generate_requests(wl, 3000.0, 5)
    try:
        set_backend("python")
        a = run_requests(req, cluster, engine="fast")
        set_backend("compiled")
        b = run_requests(req, cluster, engine="fast")
    finally:
        set_backend("auto")
    for col in COLUMNS:
        assert np.array_equal(getattr(a, col), getattr(b, col)), col


def test_unknown_backend_is_refused():
    from simulation.fast import set_backend

    with pytest.raises(ValueError, match="backend = 'gpu': must be one of auto, compiled, "
                                         "python"):
        set_backend("gpu")


def test_small_runs_do_not_load_numba_and_large_ones_do():
    """In a fresh process, a run too small to repay numba's start-up runs the recursion
    in Python; being told of enough work loads the compiled loop."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from simulation import simulate\n"
            "from simulation.fast import COMPILE_FROM_REQUESTS, prepare\n"
            "from spec import config_from_mapping\n"
            "simulate(config_from_mapping({'sim_seconds': 1000.0, 'warmup_seconds': 0.0}))\n"
            "print('numba' in sys.modules)\n"
            "prepare(COMPILE_FROM_REQUESTS)\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]
