"""The closed loop (``arrival.process: closed``) against Little's law, N = X (R + Z)."""

import numpy as np
import pytest

from simulation.batched import simulate_batched
from simulation.batched_metrics import summarise_batched
from simulation.requests import ClosedLoop
from spec import SLO, ArrivalProcess, BatchedColocated, Instance, Profile, TokenDist, Workload


def test_fixed_lengths_give_an_exact_cycle():
    """4 clients, no think time, P = 10, O = 3, 1 ms per prompt token, 10 ms per decode:
    all four arrive together, one prefill step (40 ms, token 1) and two decode steps of
    four (40 ms each): every request takes R = 0.12 s and the four re-send at once. Over
    a window of 90 whole cycles, X = 4 / 0.12 s and N = X R = 4 exactly."""
    wl = Workload(1.0, TokenDist.fixed(10), TokenDist.fixed(3),
                  ArrivalProcess(process="closed", concurrency=4))
    prof = Profile.rates(1000.0, 100.0, kv_capacity_tokens=10**6, kv_bytes_per_token=1.0)
    cluster = BatchedColocated(instances=1, instance=Instance(profile=prof, max_num_seqs=8))
    window = (1.26, 12.06)  # mid-cycle edges: 90 cycles of 0.12 s finish inside
    times, eng = simulate_batched(ClosedLoop(wl, 12.06, 0), cluster, window)
    s = summarise_batched(times, eng, window, (0.5,), SLO(), closed_loop=True)
    assert s["mean_e2e_s"] == pytest.approx(0.12)
    assert s["throughput_rps"] == pytest.approx(360 / 10.8)
    assert s["throughput_rps"] * s["mean_e2e_s"] == pytest.approx(4.0)
    assert s["mean_in_system"] == pytest.approx(4.0, rel=1e-6)
    assert len(times) == 4 * 101  # sends at 0, 0.12, ..., 12.0 (< 12.06), every client


def test_littles_law_with_random_lengths_and_think_times():
    """16 clients, exponential think times of mean 0.5 s, lognormal lengths, DistServe's
    OPT-13B: throughput x (mean response + mean realised think) is the client count within
    1 % (window effects: about N (R + Z) / T ~ 0.3 %). Think times are measured from the
    records (next arrival - last finish of each client), not assumed."""
    wl = Workload(1.0, TokenDist.lognormal(5.5, 0.6), TokenDist.lognormal(4.5, 0.5),
                  ArrivalProcess(process="closed", concurrency=16, think_time_s=0.5))
    cluster = BatchedColocated(instances=1, instance=Instance(profile="distserve/opt-13b_tp1"))
    window = (100.0, 1500.0)
    times, eng = simulate_batched(ClosedLoop(wl, 1500.0, 3), cluster, window)
    s = summarise_batched(times, eng, window, (0.5,), SLO(), closed_loop=True)
    client = np.asarray(eng.client)
    thinks = []
    for c in range(16):
        mine = np.flatnonzero(client == c)
        thinks.append(times.arrival_s[mine[1:]] - times.last_token_s[mine[:-1]])
    think = np.concatenate(thinks)
    assert think.mean() == pytest.approx(0.5, rel=0.05)  # about 5,000 draws
    x, r = s["throughput_rps"], s["mean_e2e_s"]
    assert x * (r + think.mean()) == pytest.approx(16.0, rel=0.01)
    assert s["stable"] == 1.0


def test_closed_loop_through_the_cli_settings():
    from simulation import compare
    from spec import config_from_mapping

    cfg = config_from_mapping({"serving": "batched", "mode": "both", "sim_seconds": 300,
                               "warmup_seconds": 30, "replications": 2,
                               "arrival": {"process": "closed", "concurrency": 8},
                               "prompt_tokens": {"mean": 5.0, "sigma": 0.5},
                               "output_tokens": {"mean": 4.0, "sigma": 0.5}})
    cmp = compare(cfg)
    for res in (cmp.mono, cmp.disagg):
        s = res.stats
        assert s["stable"] is True and s["mean_in_system"] == pytest.approx(8.0, rel=0.02)
