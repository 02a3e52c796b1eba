"""Streaming fast runs (bounded memory) give the whole-array path's numbers."""

import numpy as np
import pytest

import simulation.stream as stream
from simulation import simulate
from spec import TokenDist, config_from_mapping


@pytest.fixture(params=["python", "compiled"])
def backend(request):
    """Run the test with each implementation of the recursion (and, compiled, the
    one-pass summary), then give the choice back to ``auto``."""
    from simulation.fast import set_backend

    set_backend(request.param)
    yield request.param
    set_backend("auto")


@pytest.mark.parametrize(("mode", "kv"), [("mono", 0.0), ("disagg", 0.0), ("disagg", 2e-5),
                                          ("both", 0.0)])
def test_streaming_equals_whole_arrays(mode, kv, monkeypatch, backend):
    """Blocks of 997 requests (many blocks, ragged sizes, warm-up ending inside one)
    against one whole array summarised from its record columns. Compiled, the streamed
    summary is the one-pass loop, whose sums run in order rather than pairwise."""
    cfg = config_from_mapping({"mode": mode, "sim_seconds": 3000, "warmup_seconds": 300,
                               "replications": 2, "arrival": {"rate_per_s": 4.5},
                               "cluster_disagg": {"kv_transfer_s_per_token": kv}})
    from simulation import compare

    run = (lambda keep: compare(cfg, keep_requests=keep)) if mode == "both" else \
        (lambda keep: simulate(cfg, keep_requests=keep))
    whole = run(True)
    monkeypatch.setattr(stream, "BLOCK", 997)
    streamed = run(False)
    pairs = [(whole.mono, streamed.mono), (whole.disagg, streamed.disagg)] if mode == "both" \
        else [(whole, streamed)]
    for a, b in pairs:
        assert not b.records, "a streaming run keeps no per-request records"
        for ra, rb in zip(a.replications, b.replications, strict=True):
            assert ra.keys() == rb.keys()
            for k in ra:
                assert rb[k] == pytest.approx(ra[k], rel=1e-12, abs=1e-15), k


def test_token_draws_do_not_depend_on_block_size():
    d = TokenDist("log", mean=6.0, sigma=1.1, min_value=16)
    one = d.sample(np.random.default_rng(5), 10_000)
    rng = np.random.default_rng(5)
    pieces = np.concatenate([d.sample(rng, n) for n in (1, 999, 3000, 6000)])
    assert np.array_equal(one, pieces)


def test_summaries_leave_the_kept_records_untouched(backend):
    """The summary partitions its columns in place for the quantiles (and, from 2^16
    requests, on a second thread): the per-request records a run keeps must not move."""
    cfg = config_from_mapping({"mode": "disagg", "sim_seconds": 40000.0,
                               "warmup_seconds": 0.0, "arrival": {"rate_per_s": 3.0}})
    rec = simulate(cfg).records[0]
    assert len(rec) > 1 << 16
    first_token = 1.0 / cfg.cluster_disagg.decode_tokens_per_s
    rebuilt = (rec.prefill_wait_s + rec.prefill_s + rec.transfer_s + rec.decode_wait_s
               + first_token)
    assert np.array_equal(rec.ttft_s, rebuilt)


@pytest.mark.parametrize("mode", ["mono", "disagg"])
def test_mean_squared_service_is_the_measured_requests(mode, backend):
    """``mean_sq_service_<pool>_s2`` (the control variates' raw material): the measured
    requests' mean squared hold per pool, recomputed here from the kept records; the
    same streamed (compiled: the one-pass loop) and kept (the record columns)."""
    cfg = config_from_mapping({"mode": mode, "sim_seconds": 400, "warmup_seconds": 100,
                               "replications": 2})
    kept = simulate(cfg)
    streamed = simulate(cfg, keep_requests=False)
    for r, rec in enumerate(kept.records):
        m = rec.measured
        assert 0 < m.sum() < len(m)  # the warm-up excludes some: the mask matters
        holds = ({"gpu": rec.prefill_s + rec.decode_s} if mode == "mono"
                 else {"prefill": rec.prefill_s, "decode": rec.decode_s})
        for pool, hold in holds.items():
            key = f"mean_sq_service_{pool}_s2"
            want = float(np.mean(hold[m] ** 2))
            assert kept.replications[r][key] == pytest.approx(want, rel=1e-12)
            assert streamed.replications[r][key] == pytest.approx(want, rel=1e-12)


def _draw_in_child(queue) -> None:
    from simulation.requests import PARALLEL_FROM, draw_tokens, request_streams
    from spec import default_config

    _, rng_p, rng_o = request_streams(7)
    prompt, _ = draw_tokens(default_config().workload, rng_p, rng_o, PARALLEL_FROM)
    queue.put(len(prompt))


def test_large_draws_work_in_a_forked_child():
    """The worker thread that draws prompts beside the outputs does not survive a fork;
    a child forked after the parent used it (``multiprocessing`` on Linux, mutmut) must
    make its own instead of waiting for ever on the parent's executor."""
    import multiprocessing
    import warnings

    from simulation.requests import PARALLEL_FROM, draw_tokens, request_streams
    from spec import default_config

    _, rng_p, rng_o = request_streams(7)
    draw_tokens(default_config().workload, rng_p, rng_o, PARALLEL_FROM)  # worker started
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_draw_in_child, args=(queue,))
    with warnings.catch_warnings():  # Python 3.12+ warns of fork in a threaded process:
        warnings.simplefilter("ignore", DeprecationWarning)  # that is what is tested
        child.start()
    child.join(60)
    hung = child.is_alive()
    if hung:
        child.kill()
        child.join()
    assert not hung, "the forked child waited on the parent's worker thread"
    assert child.exitcode == 0 and queue.get(timeout=5) == PARALLEL_FROM
