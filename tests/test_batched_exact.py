"""The batched SimPy model against exact results: the seed model, and event sequences
worked by hand (DESIGN.md, "The batched serving model", "Exact rules")."""

import numpy as np
import pytest

from simulation.batched import BatchedEngine, simulate_batched
from simulation.requests import Requests, generate_requests
from simulation.runner import run_requests
from spec import (
    BatchedColocated,
    BatchedDisaggregated,
    DisaggregatedCluster,
    Instance,
    MonolithicCluster,
    Profile,
    config_from_mapping,
)

R_P, R_D = 8000.0, 2000.0
BIG = 10**9
# The FIFO engine adds a request's whole service at once; the batched model adds one
# step at a time (about 10^6 steps per run), so the clocks differ by rounding, up to a
# few 1e-9 s over a run. Any difference of semantics is at least one step: 1 / r_d
# = 0.5 ms. Times must agree to 1e-7 s, 5,000 times below that.
ATOL_S = 1e-7


def seed_instance(**kw) -> Instance:
    """The seed model as an instance: one request at a time, whole prompts, rates."""
    prof = Profile.rates(R_P, R_D, kv_capacity_tokens=BIG, kv_bytes_per_token=1.0)
    return Instance(profile=prof, max_num_seqs=1, max_num_batched_tokens=BIG, **kw)


def stream(rate: float, seconds: float, seed: int) -> Requests:
    """Seed-default prompts (mean 605 tokens), short outputs (mean 28 tokens) to keep the
    number of decode steps small: E[S] = 0.076 s prefill + 0.014 s decode."""
    wl = config_from_mapping({"output_tokens": {"mean": 3.0, "sigma": 0.8, "min_value": 1}}
                             ).workload.with_rate(rate)
    return generate_requests(wl, seconds, seed)


@pytest.mark.parametrize("policy", ["chunked", "prefill_priority"])
@pytest.mark.parametrize("gpus", [1, 4])
def test_colocated_reduces_to_the_seed_fifo_model(policy, gpus):
    """max_num_seqs 1, whole prompts, the rates profile, first_token decode, a shared
    queue: every request's TTFT and end equal the FIFO engine's (load about 0.8)."""
    req = stream(rate=9.0 * gpus, seconds=300.0, seed=gpus)  # load about 0.8
    fifo = run_requests(req, MonolithicCluster(gpus, R_P, R_D), engine="fast")
    cluster = BatchedColocated(instances=gpus, instance=seed_instance(policy=policy),
                               routing="shared_queue", first_token="decode")
    times, _ = simulate_batched(req, cluster)
    assert len(req) > 1000
    np.testing.assert_allclose(times.ttft_s, fifo.ttft_s, rtol=0, atol=ATOL_S)
    np.testing.assert_allclose(times.e2e_s, fifo.e2e_s, rtol=0, atol=ATOL_S)
    assert times.preemptions.sum() == 0


@pytest.mark.parametrize(("prefill", "decode"), [(1, 1), (2, 3), (3, 1)])
def test_disaggregated_reduces_to_the_seed_tandem_model(prefill, decode):
    # prefill pool at load about 0.76, decode pool below 0.3
    req = stream(rate=10.0 * prefill, seconds=300.0, seed=prefill * 10 + decode)
    assert len(req) > 2000
    fifo = run_requests(req, DisaggregatedCluster(prefill, decode, R_P, R_D), engine="fast")
    cluster = BatchedDisaggregated(prefill_instances=prefill, decode_instances=decode,
                                   prefill=seed_instance(), decode=seed_instance(),
                                   link_bandwidth_bytes_per_s=float("inf"),
                                   routing="shared_queue", first_token="decode")
    times, _ = simulate_batched(req, cluster)
    np.testing.assert_allclose(times.ttft_s, fifo.ttft_s, rtol=0, atol=ATOL_S)
    np.testing.assert_allclose(times.e2e_s, fifo.e2e_s, rtol=0, atol=ATOL_S)


# ---------------------------------------------------------------- hand-worked sequences
# rates profile: a step takes (prompt tokens) x 1 ms + (decodes) x 10 ms.

def hand_instance(**kw) -> Instance:
    prof = Profile.rates(1000.0, 100.0, kv_capacity_tokens=kw.pop("kv", 10**6),
                         kv_bytes_per_token=1.0)
    return Instance(profile=prof, **kw)


def requests(*rows) -> Requests:
    a, p, o = zip(*rows, strict=True)
    return Requests(np.array(a, float), np.array(p, float), np.array(o, float))


def colocated(**kw) -> BatchedColocated:
    return BatchedColocated(instances=1, instance=hand_instance(**kw), first_token="prefill")


def test_chunked_prefill_splits_a_prompt_and_packs_the_budget():
    """Budget 8: r0 (10 tokens) takes 8 at t=0 (8 ms); then its last 2 with r1's 3
    (5 ms): both prefills end at 0.013 with token 1; r0 decodes once (10 ms)."""
    t, _ = simulate_batched(requests((0, 10, 2), (0, 3, 1)),
                            colocated(max_num_batched_tokens=8, max_num_seqs=4))
    assert t.prefill_start_s.tolist() == pytest.approx([0.0, 0.008])
    assert t.first_token_s.tolist() == pytest.approx([0.013, 0.013])
    assert t.last_token_s.tolist() == pytest.approx([0.023, 0.013])


def test_preemption_frees_the_newest_and_recomputes_it():
    """3 blocks of 4 tokens. Both 4-token prompts take a block (8 ms, token 1 each).
    r0's decode needs a second block (the last free one); r1's then finds none and, being
    the most recently admitted, is preempted: its prompt becomes 4 + 1 = 5 tokens. It waits
    for 2 free blocks until r0 finishes at 0.038, re-prefills (5 ms; its token 2 at 0.043)
    and decodes twice more."""
    t, eng = simulate_batched(requests((0, 4, 4), (0, 4, 4)),
                              colocated(kv=12, block_size=4, max_num_seqs=4))
    assert t.first_token_s.tolist() == pytest.approx([0.008, 0.008])
    assert t.last_token_s.tolist() == pytest.approx([0.038, 0.063])
    assert t.preemptions.tolist() == [0, 1]
    assert eng.instances[0].preemptions == 1


def test_prefill_priority_interrupts_decodes_and_chunked_mixes_them():
    """r1 (2 tokens) arrives at 0.010 while r0 decodes. prefill_priority: at 0.014 a
    prefill-only step (2 ms), then r0's decodes resume. chunked: at 0.014 one step holds
    r0's decode and r1's prefill (2 + 10 ms)."""
    rows = ((0, 4, 4), (0.010, 2, 1))
    pp, _ = simulate_batched(requests(*rows), colocated(policy="prefill_priority"))
    assert pp.last_token_s.tolist() == pytest.approx([0.036, 0.016])
    ch, _ = simulate_batched(requests(*rows), colocated(policy="chunked"))
    assert ch.last_token_s.tolist() == pytest.approx([0.036, 0.026])
    assert ch.first_token_s.tolist() == pytest.approx([0.004, 0.026])


def test_transfer_and_a_kv_blocked_decode_admission():
    """Decode instance: 2 blocks of 4 tokens. Both prompts (4 tokens) prefill together
    (8 ms) and are placed at once (1 block each); transfers take 1 ms + 4 B / 1000 B/s =
    5 ms. At 0.013 r0's first decode needs a second block: r1 (newest) is preempted back
    to the prefill pool, re-prefills (4 ms, to 0.027), and waits for decode blocks until
    r0 finishes at 0.033; its second transfer ends at 0.038 and its one decode at 0.048."""
    cluster = BatchedDisaggregated(
        prefill_instances=1, decode_instances=1, prefill=hand_instance(),
        decode=hand_instance(kv=8, block_size=4), link_latency_s=0.001,
        link_bandwidth_bytes_per_s=1000.0, first_token="decode")
    t, _ = simulate_batched(requests((0, 4, 2), (0, 4, 1)), cluster)
    assert t.first_token_s.tolist() == pytest.approx([0.023, 0.048])
    assert t.last_token_s.tolist() == pytest.approx([0.033, 0.048])
    assert t.transfer_start_s.tolist() == pytest.approx([0.008, 0.033])
    assert t.transfer_end_s.tolist() == pytest.approx([0.013, 0.038])
    assert t.prefill_end_s.tolist() == pytest.approx([0.008, 0.027])
    assert t.preemptions.tolist() == [0, 1]


def test_a_request_that_can_never_fit_is_refused_by_name():
    with pytest.raises(ValueError, match=r"request 1 \(prompt 9, output 4 tokens\) needs 12 "
                       "KV tokens; batched_mono.instance holds 8"):
        simulate_batched(requests((0, 2, 2), (0, 9, 4)), colocated(kv=8, block_size=4))


def test_no_admission_in_a_step_that_preempted():
    """first_token decode, 3 blocks of 4. At 0.008 r0's first decode takes the last free
    block; r1's needs one more and r1 (newest) preempts itself, freeing its block. Its
    prompt (4 tokens, nothing generated yet) would fit that block at once, but a step that
    preempted admits nobody: r0 decodes alone (to 0.018). Worked on by hand to the end."""
    rows = ((0, 4, 4), (0, 4, 4))
    inst = BatchedColocated(instances=1, first_token="decode",
                            instance=hand_instance(kv=12, block_size=4, max_num_seqs=4))
    t, _ = simulate_batched(requests(*rows), inst)
    assert t.first_token_s.tolist() == pytest.approx([0.018, 0.066])
    assert t.last_token_s.tolist() == pytest.approx([0.056, 0.096])
    assert t.preemptions.tolist() == [0, 2]


def test_finished_prefills_go_to_the_decode_instance_with_fewest_outstanding():
    """r0 decodes on decode instance 0 when r1's prefill ends at 0.014: r1 goes to the
    idle instance 1, so both decode alone (10 ms steps) and finish at 0.034."""
    cluster = BatchedDisaggregated(
        prefill_instances=1, decode_instances=2, prefill=hand_instance(),
        decode=hand_instance(), link_bandwidth_bytes_per_s=float("inf"),
        first_token="decode")
    t, _ = simulate_batched(requests((0, 4, 3), (0.010, 4, 2)), cluster)
    assert t.first_token_s.tolist() == pytest.approx([0.014, 0.024])
    assert t.last_token_s.tolist() == pytest.approx([0.034, 0.034])


class _KVChecked(BatchedEngine):
    """The engine, asserting after every step start and every placement that no instance
    holds more blocks than its cache, and that blocks held by requests (or reserved for
    their transfers) plus free blocks are the cache, exactly."""

    checks = 0

    def _verify(self) -> None:
        held = {i.index: 0 for i in self.instances}
        for req, b in enumerate(self.blocks):
            if b:
                held[self.where[req]] += b
        for dst, b in self._pending_blocks.values():  # reserved for transfers under way
            held[dst] += b
        for inst in self.instances:
            assert 0 <= inst.free_blocks <= inst.cfg.kv_blocks, inst.index
            assert held[inst.index] + inst.free_blocks == inst.cfg.kv_blocks, inst.index
        type(self).checks += 1

    def _start_step(self, inst, t):
        super()._start_step(inst, t)
        self._verify()

    def _place_prefilled(self, t):
        super()._place_prefilled(t)
        self._verify()


@pytest.mark.parametrize("policy", ["chunked", "prefill_priority"])
@pytest.mark.parametrize("disagg", [False, True], ids=["colocated", "disaggregated"])
def test_conservation_on_random_workloads_with_preemption(policy, disagg):
    """Every request finishes once with exactly its output tokens, tokens appear in time
    order, every KV block is returned at the end, and the small cache forces preemptions
    (so the check covers them)."""
    rng = np.random.default_rng(11)
    n = 300
    arrival = np.cumsum(rng.exponential(0.02, n))
    prompt = rng.integers(1, 60, n).astype(float)
    output = rng.integers(1, 40, n).astype(float)
    req = Requests(arrival, prompt, output)
    kw = dict(kv=160, block_size=8, max_num_seqs=8, max_num_batched_tokens=64, policy=policy)
    if disagg:
        cluster = BatchedDisaggregated(prefill_instances=2, decode_instances=2,
                                       prefill=hand_instance(**kw), decode=hand_instance(**kw),
                                       link_latency_s=0.002, link_bandwidth_bytes_per_s=5e4)
    else:
        cluster = BatchedColocated(instances=2, instance=hand_instance(**kw))
    t, eng = simulate_batched(req, cluster)
    assert eng.finished == n and eng.generated == [int(o) for o in output]
    # KV never above capacity: replay with a check after every scheduling decision
    checked = _KVChecked(req, cluster)
    checked.run()
    assert checked.checks > 1000
    assert np.all(t.first_token_s >= t.arrival_s) and np.all(t.last_token_s >= t.first_token_s)
    assert np.all(t.prefill_end_s >= t.prefill_start_s)
    for inst in eng.instances:
        assert inst.free_blocks == inst.cfg.kv_blocks, f"instance {inst.index} leaked blocks"
        assert not inst.running and not inst.waiting and inst.incoming == 0
    assert t.preemptions.sum() > 0


def test_prefill_priority_refuses_a_prompt_longer_than_the_token_budget():
    with pytest.raises(ValueError, match=r"request 0: prompt of 9 tokens exceeds "
                       r"batched_mono.instance.max_num_batched_tokens = 8 under policy "
                       "prefill_priority"):
        simulate_batched(requests((0, 9, 2)),
                         colocated(policy="prefill_priority", max_num_batched_tokens=8))
    # chunked splits it instead
    t, _ = simulate_batched(requests((0, 9, 2)), colocated(max_num_batched_tokens=8))
    assert t.first_token_s.tolist() == pytest.approx([0.009])
