"""Streaming runs of the fast engine: requests are drawn, simulated and summarised a
block at a time, so memory grows only with what the summary keeps (the measured
requests' TTFT, waits and latency: 32 bytes a request), not with every column.

Same numbers as the whole-array path (same random streams, same recursion): the
arrival gaps and token draws are sequential whatever the block size, the server heaps
carry over between blocks, and in the disaggregated tandem a request joins the decode
queue only once no later arrival can become ready before it (ready times exceed arrival
times, so everything ready by a block's last arrival is final).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from spec import (
    SLO,
    BatchedColocated,
    BatchedDisaggregated,
    Cluster,
    DisaggregatedCluster,
    MonolithicCluster,
    Workload,
)

from .fast import decode_order, fifo_continue
from .metrics import Summary
from .model import StageTimes
from .requests import Requests, request_pieces

BLOCK = 1 << 20
#: Requests drawn at a time for the batched engine (which is slower per request, so
#: smaller pieces cost nothing and keep the fixed memory to a few MB).
BATCHED_BLOCK = 1 << 16


Finished = tuple[Requests, StageTimes]  # requests whose every stage is known


class _Mono:
    def __init__(self, cluster: MonolithicCluster) -> None:
        self.cluster = cluster
        self.heap = np.zeros(cluster.num_gpus)

    def feed(self, req: Requests, last_arrival: float) -> Iterator[Finished]:
        c = self.cluster
        hold = req.prompt_tokens / c.prefill_tokens_per_s + req.output_tokens / \
            c.decode_tokens_per_s
        starts = fifo_continue(req.arrival_s, hold, self.heap)
        empty = np.empty(0)
        yield req, StageTimes(starts, empty, empty)

    def flush(self) -> Iterator[Finished]:
        return iter(())


class _Disagg:
    def __init__(self, cluster: DisaggregatedCluster) -> None:
        self.cluster = cluster
        self.heap1 = np.zeros(cluster.prefill_gpus)
        self.heap2 = np.zeros(cluster.decode_gpus)
        self.offset = 0
        self.pending: dict[str, np.ndarray] = {}

    def feed(self, req: Requests, last_arrival: float) -> Iterator[Finished]:
        c = self.cluster
        prefill = req.prompt_tokens / c.prefill_tokens_per_s
        p_start = fifo_continue(req.arrival_s, prefill, self.heap1)
        p_end = p_start + prefill
        ready = p_end + req.prompt_tokens * c.kv_transfer_s_per_token \
            if c.kv_transfer_s_per_token > 0.0 else p_end
        new = {"index": np.arange(self.offset, self.offset + len(req)),
               "arrival": req.arrival_s, "prompt": req.prompt_tokens,
               "output": req.output_tokens, "p_start": p_start, "p_end": p_end,
               "ready": ready}
        self.offset += len(req)
        self.pending = new if not self.pending else \
            {k: np.concatenate((self.pending[k], v)) for k, v in new.items()}
        yield from self._decode(self.pending["ready"] <= last_arrival)

    def flush(self) -> Iterator[Finished]:
        if self.pending:
            yield from self._decode(np.ones(len(self.pending["ready"]), dtype=bool))

    def _decode(self, safe: np.ndarray) -> Iterator[Finished]:
        if not np.any(safe):
            return
        go = {k: v[safe] for k, v in self.pending.items()}
        self.pending = {k: v[~safe] for k, v in self.pending.items()}
        order = decode_order(go["ready"], go["p_end"], go["index"])
        c = self.cluster
        d_start = np.empty(len(order))
        d_start[order] = fifo_continue(go["ready"][order],
                                       go["output"][order] / c.decode_tokens_per_s, self.heap2)
        # records in arrival order (the pending buffer keeps it): a valid request stream
        req = Requests._trusted(go["arrival"], go["prompt"], go["output"])
        yield req, StageTimes(go["p_start"], go["ready"], d_start)


def stream_replication(workload: Workload, sim_seconds: float, seed: np.random.SeedSequence,
                       clusters: Sequence[Cluster], warmup_s: float,
                       quantiles: Sequence[float], loads: Sequence[dict[str, float]],
                       block: int | None = None) -> list[dict[str, float]]:
    """One replication of every cluster on the same request stream, block by block.

    Returns one summary dict per cluster, equal to the whole-array path's.
    """
    states = [_Mono(c) if isinstance(c, MonolithicCluster) else _Disagg(c) for c in clusters]
    summaries = [Summary(c, (warmup_s, sim_seconds), quantiles, load)
                 for c, load in zip(clusters, loads, strict=True)]
    block = BLOCK if block is None else block
    for req in request_pieces(workload, sim_seconds, seed, block):
        for state, summary in zip(states, summaries, strict=True):
            for done, times in state.feed(req, float(req.arrival_s[-1])):
                summary.add_times(done, times)
    for state, summary in zip(states, summaries, strict=True):
        for done, times in state.flush():
            summary.add_times(done, times)
    return [s.result() for s in summaries]


def stream_batched_replication(workload: Workload, sim_seconds: float,
                               seed: np.random.SeedSequence,
                               clusters: Sequence[BatchedColocated | BatchedDisaggregated],
                               window_s: tuple[float, float], quantiles: Sequence[float],
                               slo: SLO, block: int | None = None) -> list[dict[str, float]]:
    """One replication of the batched model on every cluster (the same requests),
    streamed through the compiled engine: memory holds the requests in flight and the
    measured requests' latencies (:class:`simulation.batched_metrics.BatchedSummary`),
    whatever the stream's length. The summaries are :func:`summarise_batched`'s."""
    from .batched_fast import OUT_ID, run_batched_fast, times_of
    from .batched_metrics import BatchedSummary

    out = []
    for cluster in clusters:
        summary = BatchedSummary(window_s)
        engine = run_batched_fast(
            request_pieces(workload, sim_seconds, seed,
                           BATCHED_BLOCK if block is None else block), cluster, window_s,
            lambda rec, s=summary: s.add(rec[1][OUT_ID], times_of(rec, window_s)))
        out.append(summary.result(engine, quantiles, slo))
    return out
