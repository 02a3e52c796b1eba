"""Goodput from the closed forms (analytic.goodput) against the simulation: the simulated
SLO attainment at the form's goodput must be near the target."""

import math

import numpy as np
import pytest
from scipy import stats

from analytic.goodput import goodput, slo_attainment_at
from spec import (
    SLO,
    ArrivalProcess,
    BatchedColocated,
    BatchedDisaggregated,
    Instance,
    TokenDist,
    Workload,
)
from tests.batched_runs import measured_runs

PROFILE = "distserve/opt-13b_tp1"
PROMPT = TokenDist("log", mean=6.0, sigma=0.7, min_value=1)
OUTPUT = TokenDist("log", mean=5.0, sigma=0.8, min_value=1)
ROOMY = {"kv_capacity_tokens": 10**7, "max_num_seqs": 10**4}


def _clusters():
    pp = Instance(profile=PROFILE, policy="prefill_priority", max_num_batched_tokens=65536)
    return {
        "prefill_priority": BatchedColocated(instances=2, instance=Instance(
            profile=PROFILE, policy="prefill_priority", max_num_batched_tokens=65536,
            **ROOMY)),
        "chunked": BatchedColocated(instances=2, instance=Instance(
            profile=PROFILE, policy="chunked", max_num_batched_tokens=2048)),
        "disaggregated": BatchedDisaggregated(prefill=pp, decode=Instance(profile=PROFILE)),
    }


def _simulated_attainment(cluster, rate, slo, reps=4, requests=20_000):
    met = [np.mean((ttft <= slo.ttft_s) & ~(tpot > slo.tpot_s)) for ttft, tpot, _ in
           measured_runs(cluster, rate, PROMPT, OUTPUT, seed=2, reps=reps, requests=requests)]
    return float(np.mean(met)), float(stats.t.ppf(0.995, reps - 1) * np.std(met, ddof=1)
                                      / math.sqrt(reps))


@pytest.mark.parametrize("name", ["prefill_priority", "chunked", "disaggregated"])
def test_goodput_meets_the_target_in_the_simulation(name):
    """DistServe's OPT-13B chatbot setting (2 GPUs, SLO TTFT 0.25 s, TPOT 0.1 s for 90 %):
    at the form's goodput the simulated attainment lies within 0.05 (plus its 99 %
    interval) of the 0.9 target, and at 0.9 of it the target holds (measured 2026-11-25:
    0.912, 0.943, 0.911 at 8.77, 7.36, 3.08 req/s; the chunked form is conservative, its
    instances seeing Poisson at half the rate where routing spreads them better)."""
    slo = SLO()
    cl = _clusters()[name]
    wl = Workload(1.0, PROMPT, OUTPUT, ArrivalProcess())
    g = goodput(wl, cl, slo)
    rate = g["goodput_rps"]
    assert g["goodput_per_gpu_rps"] == rate / 2
    assert g["limited_by"] == "TTFT"
    # the search: the target holds at the goodput and fails just past it
    assert slo_attainment_at(rate, wl, cl, slo)["slo_attainment"] >= slo.attainment
    assert slo_attainment_at(rate * 1.001, wl, cl, slo)["slo_attainment"] < slo.attainment
    met, half = _simulated_attainment(cl, rate, slo)
    assert abs(met - slo.attainment) <= 0.05 + half, (met, half)
    below, half = _simulated_attainment(cl, 0.9 * rate, slo)
    assert below >= slo.attainment - half, (below, half)


def test_unstable_points_promise_nothing():
    """Past a colocated instance's KV cache (mean KV in use at capacity) every share is 0,
    and a disaggregated cluster past its decode limit likewise."""
    cls = _clusters()
    wl = Workload(1.0, PROMPT, OUTPUT, ArrivalProcess())
    small = BatchedColocated(instances=1, instance=Instance(
        profile=PROFILE, policy="chunked", max_num_batched_tokens=2048,
        kv_capacity_tokens=4096))
    assert set(slo_attainment_at(5.0, wl, small, SLO()).values()) == {0.0}
    assert set(slo_attainment_at(50.0, wl, cls["disaggregated"], SLO()).values()) == {0.0}
