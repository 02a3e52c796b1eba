"""The compiled batched engine gives every request the SimPy model's times, bit for bit."""

import zlib

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


def small_cluster(policy: str, disagg: bool, routing: str = "least_outstanding"):
    """Three colocated instances (first token at decode), or 2 prefill + 2 decode with a
    slow link (first token at prefill), each with a KV cache of 20 blocks."""
    kw = dict(max_num_batched_tokens=64, policy=policy,
              long_prefill_token_threshold=24 if policy == "chunked" else None)
    if disagg:
        return BatchedDisaggregated(prefill_instances=2, decode_instances=2,
                                    prefill=small_kv(**kw), decode=small_kv(**kw),
                                    link_latency_s=0.002, link_bandwidth_bytes_per_s=5e4,
                                    routing=routing, first_token="prefill")
    return BatchedColocated(instances=3, instance=small_kv(**kw), routing=routing,
                            first_token="decode")


@pytest.mark.parametrize("routing", ["least_outstanding", "round_robin", "shared_queue"])
@pytest.mark.parametrize("policy", ["chunked", "prefill_priority"])
@pytest.mark.parametrize("disagg", [False, True], ids=["colocated", "disaggregated"])
def test_random_workloads_with_preemption_and_transfer(routing, policy, disagg):
    cluster = small_cluster(policy, disagg, routing)
    seed = zlib.crc32(f"{routing} {policy} {disagg}".encode())  # str hash() is salted
    t = assert_identical(random_requests(seed), cluster)
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


def _pieces(req: Requests, rng: np.random.Generator):
    """``req`` cut at random places (pieces of 0 to 6 requests, ties cut too)."""
    i = 0
    while i < len(req):
        k = int(rng.integers(0, 7))
        yield Requests._trusted(req.arrival_s[i:i + k], req.prompt_tokens[i:i + k],
                                req.output_tokens[i:i + k])
        i += k


@pytest.mark.parametrize("policy", ["chunked", "prefill_priority"])
@pytest.mark.parametrize("disagg", [False, True], ids=["colocated", "disaggregated"])
def test_a_stream_in_pieces_with_a_growing_ring_gives_the_same_times(policy, disagg,
                                                                     monkeypatch):
    """The streamed engine (one slot to start with, so the ring doubles many times; the
    output buffer drained often; pieces cut inside groups of equal arrival times) gives
    every request the whole run's times and the same counters, bit for bit."""
    from simulation import batched_fast as bf

    cluster = small_cluster(policy, disagg)
    req = random_requests(7, 400)
    req = Requests(np.round(req.arrival_s, 1), req.prompt_tokens, req.output_tokens)  # ties
    whole, ew = simulate_batched_fast(req, cluster, (0.5, 5.0))
    grown, drained = [], []
    grow = bf._State.grow
    monkeypatch.setattr(bf._State, "grow", lambda s: (grown.append(1), grow(s))[1])
    monkeypatch.setattr(bf, "OUT_PER_SLOT", 1)  # a buffer as small as allowed
    cols = np.full((bf.RING_FLOAT_ROWS, len(req)), np.nan)
    npre = np.full(len(req), -1)

    def sink(rec):
        f, i = rec
        drained.append(f.shape[1])
        assert np.all(np.isnan(cols[0, i[bf.OUT_ID]]))  # each request finishes once
        cols[:, i[bf.OUT_ID]] = f
        npre[i[bf.OUT_ID]] = i[bf.OUT_NPRE]
        np.testing.assert_array_equal(i[bf.OUT_P0], req.prompt_tokens[i[bf.OUT_ID]])
        np.testing.assert_array_equal(i[bf.OUT_OUT], req.output_tokens[i[bf.OUT_ID]])

    es = bf.run_batched_fast(_pieces(req, np.random.default_rng(3)), cluster, (0.5, 5.0),
                             sink, ring=1)
    assert len(grown) >= 4 and len(drained) >= 3
    np.testing.assert_array_equal(cols[bf.ARRIVAL], req.arrival_s)
    for row, f in enumerate(FIELDS[:7], start=bf.T_PS):
        np.testing.assert_array_equal(cols[row], getattr(whole, f), err_msg=f)
    np.testing.assert_array_equal(npre, whole.preemptions)
    assert whole.preemptions.sum() > 50
    assert es.counters() == ew.counters()
    np.testing.assert_array_equal(es.itl_hist, ew.itl_hist)
    assert es.itl_sum_s == ew.itl_sum_s


def test_every_arrival_at_one_instant_in_pieces():
    """A trace whose arrivals all share one instant, fed in pieces: routed together."""
    rng = np.random.default_rng(5)
    req = Requests(np.zeros(60), rng.integers(1, 60, 60).astype(float),
                   rng.integers(1, 40, 60).astype(float))
    cluster = BatchedColocated(instances=2, instance=small_kv(policy="chunked",
                                                              max_num_batched_tokens=32))
    from simulation import batched_fast as bf

    whole = assert_identical(req, cluster)  # the SimPy model's times
    got = {}
    bf.run_batched_fast(_pieces(req, rng), cluster, (0.0, 5.0),
                        lambda rec: got.update(zip(rec[1][bf.OUT_ID].tolist(),
                                                   rec[0][bf.T_F].tolist(), strict=True)),
                        ring=2)
    np.testing.assert_array_equal([got[i] for i in range(60)], whole.first_token_s)


def test_growing_the_ring_moves_every_request_and_rewrites_every_link():
    """Requests 4 to 7 in a ring of 4 (slot = id % 4) move to slot id % 8; each link,
    list end and transfer in flight still names the same request afterwards."""
    from simulation import batched_fast as bf

    s = bf._State(4, 1, 2, np.array([10]), 4)
    ids = np.array([4, 5, 6, 7])  # slots 0, 1, 2, 3
    s.ri[bf.IDENT] = ids
    s.ri[bf.P0] = ids * 10
    s.rf[bf.T_F] = ids / 10
    s.ri[bf.Q_NEXT] = [1, 2, 3, bf.NONE]  # queue 4 -> 5 -> 6 -> 7
    s.ri[bf.Q_PREV] = [bf.NONE, 0, 1, 2]
    s.ri[bf.R_NEXT] = [bf.NONE, 3, bf.NONE, bf.NONE]  # batch 5 -> 7
    s.ri[bf.R_PREV] = [bf.NONE, bf.NONE, bf.NONE, 1]
    s.ri[bf.I_NEXT] = [bf.NONE, bf.NONE, bf.NONE, 2]  # step items 7 -> 6
    s.ri[bf.I_PREV] = [bf.NONE, bf.NONE, 3, bf.NONE]
    s.qi[bf.Q_HEAD, 0], s.qi[bf.Q_TAIL, 0] = 0, 3
    s.mi[bf.R_HEAD, 0], s.mi[bf.R_TAIL, 0] = 1, 3
    s.mi[bf.I_HEAD, 0], s.mi[bf.I_TAIL, 0] = 3, 2
    s.st[bf.S_HLEN] = 2  # transfers of 5 and 6 in flight
    s.hf[:2] = [1.0, 2.0]
    s.hq[bf.H_SLOT, :2] = [1, 2]
    s.hq[bf.H_SEQ, :2] = [8, 9]
    s.grow()
    slot = {int(i): int(i) % 8 for i in ids}
    assert s.ri.shape[1] == 8 and s.rf.shape[1] == 8 and s.hq.shape[1] == 8
    assert sorted(np.flatnonzero(s.ri[bf.IDENT] != bf.NONE)) == sorted(slot.values())
    for i, k in slot.items():
        assert s.ri[bf.IDENT, k] == i and s.ri[bf.P0, k] == 10 * i and s.rf[bf.T_F, k] == i / 10

    def who(k):
        return None if k == bf.NONE else int(s.ri[bf.IDENT, k])

    assert [who(s.ri[bf.Q_NEXT, slot[i]]) for i in (4, 5, 6, 7)] == [5, 6, 7, None]
    assert [who(s.ri[bf.Q_PREV, slot[i]]) for i in (4, 5, 6, 7)] == [None, 4, 5, 6]
    assert who(s.ri[bf.R_NEXT, slot[5]]) == 7 and who(s.ri[bf.R_PREV, slot[7]]) == 5
    assert who(s.ri[bf.I_NEXT, slot[7]]) == 6 and who(s.ri[bf.I_PREV, slot[6]]) == 7
    assert (who(s.qi[bf.Q_HEAD, 0]), who(s.qi[bf.Q_TAIL, 0])) == (4, 7)
    assert s.qi[bf.Q_HEAD, 1] == bf.NONE  # an empty queue stays empty
    assert (who(s.mi[bf.R_HEAD, 0]), who(s.mi[bf.R_TAIL, 0])) == (5, 7)
    assert (who(s.mi[bf.I_HEAD, 0]), who(s.mi[bf.I_TAIL, 0])) == (7, 6)
    assert [who(k) for k in s.hq[bf.H_SLOT, :2]] == [5, 6]
    assert list(s.hq[bf.H_SEQ, :2]) == [8, 9] and list(s.hf[:2]) == [1.0, 2.0]
