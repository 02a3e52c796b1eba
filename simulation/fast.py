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

Cost ``O(n log c)``: clusters of thousands of GPUs cost about what small ones do. The
loop is compiled with numba (a well-kept JIT for numeric Python) because the interpreter
costs about 1 us a request, and cached on disk so later processes skip the compile.
"""

from __future__ import annotations

import heapq

import numpy as np
from numba import njit

from spec import DisaggregatedCluster, MonolithicCluster

from .model import StageTimes
from .requests import Requests


@njit(cache=True, nogil=True)
def _fifo_kernel(ready: np.ndarray, hold: np.ndarray, heap: np.ndarray) -> np.ndarray:
    """The recursion with an array binary min-heap of server-free times, updated in place
    (so a long run can be fed in pieces). Compiled by numba and cached on disk."""
    n = ready.shape[0]
    servers = heap.shape[0]
    starts = np.empty(n)
    for i in range(n):
        f = heap[0]
        t = ready[i]
        s = t if t > f else f
        starts[i] = s
        # replace the root by s + hold and sift it down
        v = s + hold[i]
        j = 0
        while True:
            left = 2 * j + 1
            if left >= servers:
                break
            right = left + 1
            k = right if right < servers and heap[right] < heap[left] else left
            if heap[k] < v:
                heap[j] = heap[k]
                j = k
            else:
                break
        heap[j] = v
    return starts


def fifo_starts_python(ready_s: list[float], hold_s: list[float], servers: int) -> list[float]:
    """The same recursion in pure Python with :mod:`heapq` (the readable reference)."""
    free = [0.0] * servers  # a valid heap: all equal
    starts = [0.0] * len(ready_s)
    pop_push = heapq.heapreplace
    for i, (t, hold) in enumerate(zip(ready_s, hold_s, strict=True)):
        f = free[0]
        s = t if t > f else f
        starts[i] = s
        pop_push(free, s + hold)
    return starts


def fifo_starts(ready_s: np.ndarray, hold_s: np.ndarray, servers: int) -> np.ndarray:
    """Start times of a FIFO ``servers``-server pool, requests taken in array order.

    ``start_i = max(ready_i, earliest free server)``; the server is then busy until
    ``start_i + hold_i``. Compiled with numba (first call compiles, then the machine code
    is cached beside the module); :func:`fifo_starts_python` is the same in pure Python.
    """
    return fifo_continue(ready_s, hold_s, np.zeros(int(servers)))


def fifo_continue(ready_s: np.ndarray, hold_s: np.ndarray, heap: np.ndarray) -> np.ndarray:
    """:func:`fifo_starts` from a given heap of server-free times, which it updates."""
    return _fifo_kernel(np.ascontiguousarray(ready_s, dtype=np.float64),
                        np.ascontiguousarray(hold_s, dtype=np.float64), heap)


def decode_order(ready_s: np.ndarray, prefill_end_s: np.ndarray,
                 index: np.ndarray) -> np.ndarray:
    """The order requests join the decode queue: SimPy's, by ready time, then the time
    the last delay was scheduled (prefill end), then arrival index."""
    return np.lexsort((index, prefill_end_s, ready_s))


def simulate_mono_fast(requests: Requests, cluster: MonolithicCluster) -> StageTimes:
    """Monolithic serving by the recursion (same result as :func:`simulate_mono`)."""
    hold = (requests.prompt_tokens / cluster.prefill_tokens_per_s
            + requests.output_tokens / cluster.decode_tokens_per_s)
    starts = fifo_starts(requests.arrival_s, hold, cluster.num_gpus)
    empty = np.empty(0)
    return StageTimes(starts, empty, empty)


def simulate_disagg_fast(requests: Requests, cluster: DisaggregatedCluster) -> StageTimes:
    """Disaggregated serving by the recursion (same result as :func:`simulate_disagg`)."""
    prefill = requests.prompt_tokens / cluster.prefill_tokens_per_s
    decode = requests.output_tokens / cluster.decode_tokens_per_s
    p_start = fifo_starts(requests.arrival_s, prefill, cluster.prefill_gpus)
    p_end = p_start + prefill
    ready = p_end + requests.prompt_tokens * cluster.kv_transfer_s_per_token \
        if cluster.kv_transfer_s_per_token > 0.0 else p_end
    order = decode_order(ready, p_end, np.arange(len(ready)))
    d_start = np.empty_like(ready)
    d_start[order] = fifo_starts(ready[order], decode[order], cluster.decode_gpus)
    return StageTimes(p_start, ready, d_start)
