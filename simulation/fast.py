"""The exact fast engine for the FIFO model: the Kiefer-Wolfowitz recursion.

In a FIFO pool of ``c`` identical servers, each request in queue order takes the server
that frees first: with a heap of server-free times ``h``,
``start_i = max(ready_i, pop(h))`` and ``push(h, start_i + hold_i)``. This is exactly what
the SimPy model does, event by event, so fed the same requests it gives the same times
(the additions are the same floating-point operations: ``start + hold``,
``end + transfer``).

The disaggregated tandem runs the recursion on the prefill pool in arrival order, then
on the decode pool in the order requests become ready for decode. Ties in that order
are broken as SimPy's event queue breaks them (equal times are processed in the order
the events were scheduled): by ready time, then by the time the last delay was
scheduled (prefill end, when a KV transfer follows it), then by arrival index.

Cost ``O(n log c)``: clusters of thousands of GPUs cost about what small ones do.
"""

from __future__ import annotations

import heapq

import numpy as np

from spec import DisaggregatedCluster, MonolithicCluster

from .model import StageTimes
from .requests import Requests


def fifo_starts(ready_s: list[float], hold_s: list[float], servers: int) -> list[float]:
    """Start times of a FIFO ``servers``-server pool, requests taken in list order.

    ``start_i = max(ready_i, earliest free server)``; the server is then busy until
    ``start_i + hold_i``.
    """
    free = [0.0] * servers  # a valid heap: all equal
    starts = [0.0] * len(ready_s)
    pop_push = heapq.heapreplace
    for i, (t, hold) in enumerate(zip(ready_s, hold_s, strict=True)):
        f = free[0]
        s = t if t > f else f
        starts[i] = s
        pop_push(free, s + hold)
    return starts


def simulate_mono_fast(requests: Requests, cluster: MonolithicCluster) -> StageTimes:
    """Monolithic serving by the recursion (same result as :func:`simulate_mono`)."""
    hold = (requests.prompt_tokens / cluster.prefill_tokens_per_s
            + requests.output_tokens / cluster.decode_tokens_per_s)
    starts = fifo_starts(requests.arrival_s.tolist(), hold.tolist(), cluster.num_gpus)
    empty = np.empty(0)
    return StageTimes(np.asarray(starts), empty, empty)


def simulate_disagg_fast(requests: Requests, cluster: DisaggregatedCluster) -> StageTimes:
    """Disaggregated serving by the recursion (same result as :func:`simulate_disagg`)."""
    prefill = requests.prompt_tokens / cluster.prefill_tokens_per_s
    decode = requests.output_tokens / cluster.decode_tokens_per_s
    p_start = np.asarray(fifo_starts(requests.arrival_s.tolist(), prefill.tolist(),
                                     cluster.prefill_gpus))
    p_end = p_start + prefill
    if cluster.kv_transfer_s_per_token > 0.0:
        ready = p_end + requests.prompt_tokens * cluster.kv_transfer_s_per_token
        order = np.lexsort((np.arange(len(ready)), p_end, ready))
    else:
        ready = p_end
        order = np.argsort(ready, kind="stable")
    d_start = np.empty_like(ready)
    d_start[order] = fifo_starts(ready[order].tolist(), decode[order].tolist(),
                                 cluster.decode_gpus)
    return StageTimes(p_start, ready, d_start)
