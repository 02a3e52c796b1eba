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

Two implementations of the one recursion, bit-identical (tested): Python's
:mod:`heapq` (about 0.4 us a request) and the same loop compiled with numba (a well-kept
JIT for numeric Python; about 0.02 us a request, cached on disk). Loading numba and the
cached machine code costs about 0.7 s, so a process loads it only for work that repays
that: :func:`prepare` is told how many requests are coming, and from
:data:`COMPILE_FROM_REQUESTS` on (or once loaded, or when :func:`set_backend` says so)
the compiled loop runs; smaller runs in a fresh process use heapq.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

from spec import DisaggregatedCluster, MonolithicCluster

from .model import StageTimes
from .requests import Requests

#: Expected requests through the recursion from which loading the compiled loop pays
#: (0.7 s of start-up against 0.4 us a request saved).
COMPILE_FROM_REQUESTS = 1_500_000

#: ``auto`` (by :func:`prepare`), ``compiled`` or ``python``.
BACKENDS: tuple[str, ...] = ("auto", "compiled", "python")
_backend = "auto"
_compiled: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None
_compiled_summary: Callable[..., int] | None = None


def _fifo_loop(ready: np.ndarray, hold: np.ndarray, heap: np.ndarray) -> np.ndarray:
    """The recursion with an array binary min-heap of server-free times, updated in place
    (so a long run can be fed in pieces). Compiled by numba (:func:`compiled_kernel`)."""
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


def compiled_kernel() -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """:func:`_fifo_loop` compiled by numba (imported, compiled or loaded from the
    on-disk cache on first use; later calls return the same function)."""
    global _compiled
    if _compiled is None:
        from numba import njit

        _compiled = njit(cache=True, nogil=True)(_fifo_loop)
    return _compiled


def _summary_loop(arrival: np.ndarray, prompt: np.ndarray, output: np.ndarray,
                  p_start: np.ndarray, ready: np.ndarray, d_start: np.ndarray, mono: bool,
                  prefill_rate: float, decode_rate: float, kv_s_per_token: float,
                  warmup_s: float, hi_s: float, ttft: np.ndarray, p_wait: np.ndarray,
                  d_wait: np.ndarray, e2e: np.ndarray, acc: np.ndarray) -> int:
    """One pass over a block of finished requests: what :class:`~simulation.metrics.
    Summary` keeps and sums, without the per-request record columns in between.

    The per-request values are the same floating-point operations as
    :func:`~simulation.metrics.build_records` (so the same bits); sums are accumulated
    in order rather than pairwise (differences of order 1e-16 relative per term).
    Measured requests (``arrival >= warmup_s``) are written compacted to ``ttft``,
    ``p_wait``, ``d_wait`` (not for ``mono``) and ``e2e``; their number is returned.
    ``acc`` accumulates ``[prefill, transfer, decode]`` seconds of measured requests,
    the number finishing in ``[warmup_s, hi_s)``, per pool (first, then decode) busy and
    waiting request-seconds inside the window, then per pool the measured requests'
    squared hold times (mono: ``(prefill + decode)^2``; disagg: ``prefill^2``,
    ``decode^2``).
    """
    lo, hi = warmup_s, hi_s
    first_token = 1.0 / decode_rate
    m = 0
    s_pre = s_tr = s_dec = fin = 0.0
    busy1 = wait1 = busy2 = wait2 = 0.0
    sq1 = sq2 = 0.0
    for i in range(arrival.shape[0]):
        a = arrival[i]
        ps = p_start[i]
        pre = prompt[i] / prefill_rate
        dec = output[i] / decode_rate
        pw = ps - a
        if mono:
            tr = 0.0
            dw = 0.0
            t = pw + pre + first_token
            e = pw + pre + dec
            b1 = ps + pre + dec  # the GPU is held for prefill and decode
        else:
            tr = prompt[i] * kv_s_per_token
            ds = d_start[i]
            dw = ds - ready[i]
            t = pw + pre + tr + dw + first_token
            e = pw + pre + tr + dw + dec
            b1 = ps + pre
            x = min(ds + dec, hi) - max(ds, lo)
            busy2 += x if x > 0.0 else 0.0
            x = min(ds, hi) - max(ds - dw, lo)
            wait2 += x if x > 0.0 else 0.0
        x = min(b1, hi) - max(ps, lo)
        busy1 += x if x > 0.0 else 0.0
        x = min(ps, hi) - max(a, lo)
        wait1 += x if x > 0.0 else 0.0
        f = a + e
        if lo <= f < hi:
            fin += 1.0
        if a >= lo:
            ttft[m] = t
            p_wait[m] = pw
            if not mono:
                d_wait[m] = dw
            e2e[m] = e
            s_pre += pre
            s_tr += tr
            s_dec += dec
            if mono:
                sq1 += (pre + dec) * (pre + dec)
            else:
                sq1 += pre * pre
                sq2 += dec * dec
            m += 1
    acc[0] += s_pre
    acc[1] += s_tr
    acc[2] += s_dec
    acc[3] += fin
    acc[4] += busy1
    acc[5] += wait1
    acc[6] += busy2
    acc[7] += wait2
    acc[8] += sq1
    acc[9] += sq2
    return m


def compiled_summary() -> Callable[..., int] | None:
    """:func:`_summary_loop` compiled by numba, or ``None`` while this process runs the
    recursion in Python (then the numpy path of the summary is as quick)."""
    global _compiled_summary
    if _compiled_summary is None and _use_compiled():
        from numba import njit

        _compiled_summary = njit(cache=True, nogil=True)(_summary_loop)
    return _compiled_summary


def set_backend(backend: str) -> None:
    """Choose the recursion's implementation for this process: ``auto`` (the default:
    compiled once :func:`prepare` expects enough work, or once loaded), ``compiled``
    or ``python``. The numbers are the same bit for bit."""
    global _backend
    if backend not in BACKENDS:
        raise ValueError(f"backend = {backend!r}: must be one of {', '.join(BACKENDS)}")
    _backend = backend


def prepare(expected_requests: float) -> None:
    """Load the compiled loop if ``expected_requests`` passes through the recursion
    (summed over pools and replications) repay its start-up."""
    if _backend == "auto" and expected_requests >= COMPILE_FROM_REQUESTS:
        compiled_kernel()


def _use_compiled() -> bool:
    if _backend == "compiled":
        compiled_kernel()
        return True
    return _backend == "auto" and _compiled is not None


def fifo_starts_python(ready_s: list[float], hold_s: list[float], servers: int) -> list[float]:
    """The same recursion in pure Python with :mod:`heapq` (the readable reference)."""
    return _heapq_continue(ready_s, hold_s, [0.0] * servers)  # all equal: a valid heap


def _heapq_continue(ready_s: list[float], hold_s: list[float], free: list[float]) -> list[float]:
    """The recursion on the heap ``free`` of server-free times, which it updates."""
    starts = []
    append = starts.append
    pop_push = heapq.heapreplace
    for t, hold in zip(ready_s, hold_s, strict=True):
        f = free[0]
        s = t if t > f else f
        append(s)
        pop_push(free, s + hold)
    return starts


def fifo_starts(ready_s: np.ndarray, hold_s: np.ndarray, servers: int) -> np.ndarray:
    """Start times of a FIFO ``servers``-server pool, requests taken in array order.

    ``start_i = max(ready_i, earliest free server)``; the server is then busy until
    ``start_i + hold_i``. Compiled with numba or with heapq, as the module docstring
    says; :func:`fifo_starts_python` is the readable reference.
    """
    return fifo_continue(ready_s, hold_s, np.zeros(int(servers)))


def fifo_continue(ready_s: np.ndarray, hold_s: np.ndarray, heap: np.ndarray) -> np.ndarray:
    """:func:`fifo_starts` from a given heap of server-free times, which it updates (a
    binary min-heap in the layout :mod:`heapq` uses, so either implementation may
    continue the other's)."""
    ready = np.ascontiguousarray(ready_s, dtype=np.float64)
    hold = np.ascontiguousarray(hold_s, dtype=np.float64)
    if _use_compiled():
        return compiled_kernel()(ready, hold, heap)
    free = heap.tolist()
    starts = _heapq_continue(ready.tolist(), hold.tolist(), free)
    heap[:] = free
    return np.array(starts, dtype=np.float64)


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
