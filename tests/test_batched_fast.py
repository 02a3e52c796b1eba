"""The compiled batched engine gives every request the SimPy model's times, bit for bit."""

import numpy as np
import pytest

from simulation.batched import simulate_batched
from simulation.batched_fast import arrival_events, simulate_batched_fast
from simulation.requests import Requests, generate_requests
from spec import (
    BatchedColocated,
    BatchedDisaggregated,
    Instance,
    Profile,
    config_from_mapping,
    load_profile,
)

FIELDS = ("prefill_start_s", "prefill_end_s", "transfer_start_s", "transfer_end_s",
          "decode_admit_s", "first_token_s", "last_token_s", "preemptions", "measured")


def assert_identical(req, cluster, window=(0.5, 5.0)):
    a, ea = simulate_batched(req, cluster, window)
    b, eb = simulate_batched_fast(req, cluster, window)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert ea.counters() == eb.counters()
    np.testing.assert_array_equal(ea.itl_hist, eb.itl_hist)
    assert ea.itl_sum_s == eb.itl_sum_s
    return a


def small_kv(**kw):
    prof = Profile.rates(1000.0, 100.0, kv_capacity_tokens=160, kv_bytes_per_token=1.0)
    return Instance(profile=prof, block_size=8, max_num_seqs=8, **kw)


def random_requests(seed: int, n: int = 300) -> Requests:
    rng = np.random.default_rng(seed)
    return Requests(np.cumsum(rng.exponential(0.02, n)), rng.integers(1, 60, n).astype(float),
                    rng.integers(1, 40, n).astype(float))


@pytest.mark.parametrize("routing", ["least_outstanding", "round_robin", "shared_queue"])
@pytest.mark.parametrize("policy", ["chunked", "prefill_priority"])
@pytest.mark.parametrize("disagg", [False, True], ids=["colocated", "disaggregated"])
def test_random_workloads_with_preemption_and_transfer(routing, policy, disagg):
    kw = dict(max_num_batched_tokens=64, policy=policy,
              long_prefill_token_threshold=24 if policy == "chunked" else None)
    if disagg:
        cluster = BatchedDisaggregated(prefill_instances=2, decode_instances=2,
                                       prefill=small_kv(**kw), decode=small_kv(**kw),
                                       link_latency_s=0.002, link_bandwidth_bytes_per_s=5e4,
                                       routing=routing, first_token="prefill")
    else:
        cluster = BatchedColocated(instances=3, instance=small_kv(**kw), routing=routing,
                                   first_token="decode")
    t = assert_identical(random_requests(hash((routing, policy, disagg)) % 1000), cluster)
    assert t.preemptions.sum() > 50  # the comparison covers preemption


@pytest.mark.parametrize("profile", ["distserve/opt-13b_tp1", "distserve-vllm/opt-13b_tp2",
                                     "roofline/llama-3.1-8b_h100_tp1"])
def test_shipped_profiles_on_a_chat_workload(profile):
    """Every profile form the shipped data uses (DistServe's, with its batch-size switch,
    and the roofline), both architectures; the decode instance's batches average about
    110 requests here, so DistServe's switch at 95 is crossed both ways."""
    cfg = config_from_mapping({"serving": "batched", "profile": profile,
                               "arrival": {"rate_per_s": 12.0},
                               "prompt_tokens": {"mean": 5.5, "sigma": 0.6},
                               "output_tokens": {"mean": 5.0, "sigma": 0.6}})
    req = generate_requests(cfg.workload, 200.0, 3)
    for cluster in (cfg.batched_mono, cfg.batched_disagg):
        assert_identical(req, cluster, (20.0, 200.0))


def test_mixed_form_and_zero_transfer():
    prof = Profile.mixed(0.002, 0.01, 0.001, 1e-5, 1e-9, 2e-8, 1e-4, kv_capacity_tokens=4000,
                         kv_bytes_per_token=1.0)
    inst = Instance(profile=prof, max_num_seqs=16, max_num_batched_tokens=256)
    cluster = BatchedDisaggregated(prefill=inst, decode=inst,
                                   link_bandwidth_bytes_per_s=float("inf"))
    assert_identical(random_requests(7, 400), cluster)


def test_mixed_form_with_prefix_and_shared_step_terms_chunked():
    """All eleven mixed-form terms (a calibrated kernel profile's), on chunked colocated
    instances where chunks attend to cached prefixes and share steps with decodes."""
    prof = Profile.mixed(0.002, 0.01, 0.001, 1e-5, 1e-9, 2e-8, 1e-4, 3e-10, 5e-7, 7e-9, 1e-5,
                         kv_capacity_tokens=4000, kv_bytes_per_token=1.0)
    inst = Instance(profile=prof, max_num_seqs=16, max_num_batched_tokens=64,
                    policy="chunked")
    assert_identical(random_requests(8, 400), BatchedColocated(instances=2, instance=inst))


def test_arrival_instants_follow_simpys_clock():
    """SimPy reaches an arrival at ``now + (a - now)``, which rounds differently from
    ``a`` for some pairs; the fast engine uses the same instants."""
    a = np.array([0.1, 0.30000000000000004, 0.7, 0.7, 1e9 + 0.1])
    ev = arrival_events(a)
    now = 0.0
    for x, e in zip(a, ev, strict=True):
        if x - now > 0:
            now = now + (x - now)
        assert e == now
    assert np.all(ev >= 0)


def test_load_profile_cache_is_not_the_reason_runs_agree():
    load_profile.cache_clear()
    assert_identical(random_requests(1, 100),
                     BatchedColocated(instances=2, instance=small_kv(policy="chunked",
                                                                    max_num_batched_tokens=32)))
