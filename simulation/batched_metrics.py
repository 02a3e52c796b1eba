"""Statistics of one batched run: latency quantiles, SLO attainment, throughput, instances.

Latencies are over the *measured* requests (arrival in ``[warmup, sim_seconds)``):
TTFT, TPOT (requests with ``O >= 2``), E2E, the queueing delay before the first
scheduled chunk, and inter-token latency (ITL: every gap between two consecutive tokens
of a measured request; its mean exact, its quantiles from bins at most 1/256 of their
values wide, within 0.2 %). Time averages are over the window ``[warmup, sim_seconds)``:

- ``utilisation_<pool>``: busy instance-seconds / (instances x window);
- ``mean_batch_<pool>``: requests per step, over steps starting in the window;
- ``kv_occupancy_<pool>``: used KV block-seconds / (instances x blocks x window);
- ``preemptions_<pool>``: preemptions in the window, per second;
- ``throughput_rps`` / ``throughput_tokens_per_s``: requests finishing in the window,
  and their output tokens, per second of window;
- ``mean_in_system``: time-average number of requests arrived and not finished.

``stable`` is an empirical verdict (the closed forms give the exact limit): a run is
stable unless the time-average backlog of the window's second half exceeds 1.5 times
that of its first half plus 2 requests. An overloaded queue grows linearly, which makes
that ratio about 2.4 with the default warm-up; a stable one keeps it near 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from spec import SLO

from .batched import BatchedTimes, itl_bin_middle
from .metrics import quantile_key

#: Statistics the summary always reports quantiles for, besides those asked for.
BASE_QUANTILES = (0.5, 0.9, 0.99)


def histogram_quantiles(hist: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Quantiles of binned counts (:func:`simulation.batched.itl_bin`), read at the middle
    of the bin holding the ``q``-th count; NaN when empty."""
    total = int(hist.sum())
    if total == 0:
        return [math.nan for _ in qs]
    cum = np.cumsum(hist)
    out = []
    for q in qs:
        k = int(np.searchsorted(cum, q * total, side="left"))
        out.append(itl_bin_middle(k))
    return out


def exact_sum(values: np.ndarray) -> Fraction:
    """The exact sum of finite floats, as a fraction (round it once with ``float``).

    Every float is ``m 2^(e-53)`` with an integer ``|m| < 2^53``: the ``m`` of each
    exponent are summed as two 26-bit halves in int64 (exact for up to 2^36 values),
    then scaled exactly. Sums of pieces add up to the sum of the whole, so a run summed
    batch by batch gives the whole run's number, bit for bit.
    """
    x = np.asarray(values, dtype=float).ravel()
    x = x[x != 0.0]
    if not len(x):
        return Fraction(0)
    m, e = np.frexp(x)
    ints = (m * 2.0**53).astype(np.int64)
    order = np.argsort(e, kind="stable")
    e, ints = e[order], ints[order]
    starts = np.flatnonzero(np.r_[True, e[1:] != e[:-1]])
    high = np.add.reduceat(ints >> 26, starts)
    low = np.add.reduceat(ints & ((1 << 26) - 1), starts)
    total = Fraction(0)
    for ex, h, lo in zip(e[starts].tolist(), high.tolist(), low.tolist(), strict=True):
        total += Fraction((h << 26) + lo) * Fraction(2) ** (ex - 53)
    return total


def _backlog_integral(arrival: np.ndarray, done: np.ndarray, lo: float, hi: float
                      ) -> Fraction:
    """Request-seconds in the system within ``[lo, hi)``: the sum of the overlaps (exact,
    :func:`exact_sum`)."""
    return exact_sum(np.clip(np.minimum(done, hi) - np.maximum(arrival, lo), 0.0, None))


#: Columns kept for each measured request (their quantiles need every value).
KEPT = ("ttft_s", "tpot_s", "e2e_s", "queue_s", "transfer_s")


def _kept_columns(times: BatchedTimes) -> np.ndarray:
    """The :data:`KEPT` columns of the measured requests, in request order."""
    m = times.measured
    return np.stack([times.ttft_s[m], times.tpot_s[m], times.e2e_s[m],
                     (times.prefill_start_s - times.arrival_s)[m],
                     (times.transfer_end_s - times.transfer_start_s)[m]])


def _window_sums(times: BatchedTimes, lo: float, hi: float) -> list:
    """Over every request: those finishing in ``[lo, hi)`` and their output tokens; the
    request-seconds in the system over each half of the window. Exact (ints and
    fractions), so sums over batches equal the sum over the whole run."""
    finish = times.last_token_s
    done = (finish >= lo) & (finish < hi)
    mid = lo + (hi - lo) / 2
    return [int(np.count_nonzero(done)), int(times.output_tokens[done].sum()),
            _backlog_integral(times.arrival_s, finish, lo, mid),
            _backlog_integral(times.arrival_s, finish, mid, hi)]


def summarise_batched(times: BatchedTimes, engine, window_s: tuple[float, float],
                      quantiles: Sequence[float], slo: SLO, *, closed_loop: bool = False
                      ) -> dict[str, float]:
    """One replication's statistics (keys as the seed model's, plus TPOT, ITL, SLO).

    ``engine`` is what either batched engine leaves: ``counters()``, ``itl_hist``,
    ``itl_sum_s`` and ``disagg``."""
    m = times.measured
    return _statistics(_kept_columns(times), int(times.preemptions[m].sum()),
                       len(times.arrival_s), _window_sums(times, *window_s), engine,
                       window_s, quantiles, slo, closed_loop)


class BatchedSummary:
    """:func:`summarise_batched` of a run whose records arrive in batches, in any order
    (:func:`simulation.batched_fast.run_batched_fast`), keeping only the :data:`KEPT`
    columns of the measured requests (40 bytes each) and running sums.

    The same numbers as the whole run's summary, bit for bit (its sums are exact).
    """

    #: requests per stored piece of the kept columns
    CHUNK = 1 << 16

    def __init__(self, window_s: tuple[float, float]) -> None:
        self.window_s = window_s
        self.n_requests = 0
        self.preemptions = 0
        self.sums: list = [0, 0, Fraction(0), Fraction(0)]
        self._pieces: dict[int, list] = {}  # piece -> one array per kept column
        self._first = self._last = -1  # measured ids: one run of consecutive ids

    def add(self, ids: np.ndarray, times: BatchedTimes) -> None:
        """The finished requests numbered ``ids`` (their records as ``times``)."""
        self.n_requests += len(ids)
        self.sums = [a + b for a, b in zip(self.sums, _window_sums(times, *self.window_s),
                                           strict=True)]
        m = times.measured
        self.preemptions += int(times.preemptions[m].sum())
        if not m.any():
            return
        kept = _kept_columns(times)
        mid = ids[m]
        lo, hi = int(mid.min()), int(mid.max())
        self._first = lo if self._first < 0 else min(self._first, lo)
        self._last = max(self._last, hi)
        piece = mid // self.CHUNK
        for p in np.unique(piece).tolist():
            if p not in self._pieces:
                self._pieces[p] = [np.full(self.CHUNK, np.nan) for _ in KEPT]
            sel = piece == p
            for j, row in enumerate(self._pieces[p]):
                row[mid[sel] - p * self.CHUNK] = kept[j, sel]

    def columns(self) -> list[np.ndarray]:
        """The kept columns of the measured requests, in request order (handed over a
        column at a time: the peak is the columns plus one of them)."""
        n = self._last + 1 - self._first if self._first >= 0 else 0
        parts = range(self._first // self.CHUNK, self._last // self.CHUNK + 1) if n else ()
        out = []
        for j in range(len(KEPT)):
            col = np.empty(n)
            for p in parts:
                a = max(self._first, p * self.CHUNK)
                b = min(self._last + 1, (p + 1) * self.CHUNK)
                col[a - self._first:b - self._first] = \
                    self._pieces[p][j][a - p * self.CHUNK:b - p * self.CHUNK]
                self._pieces[p][j] = None
            out.append(col)
        self._pieces.clear()
        return out

    def result(self, engine, quantiles: Sequence[float], slo: SLO) -> dict[str, float]:
        """The summary (once: the kept columns are handed over)."""
        return _statistics(self.columns(), self.preemptions, self.n_requests, self.sums,
                           engine, self.window_s, quantiles, slo, False)


def _statistics(kept: Sequence[np.ndarray], preemptions: int, n_requests: int, sums: list,
                engine, window_s: tuple[float, float], quantiles: Sequence[float], slo: SLO,
                closed_loop: bool) -> dict[str, float]:
    """The summary from the measured requests' :data:`KEPT` columns (reordered in place)
    and the window sums of :func:`_window_sums`."""
    lo, hi = window_s
    span = hi - lo
    qs = sorted(set(quantiles) | set(BASE_QUANTILES))
    ttft, tpot_all, e2e, queue, transfer = kept  # reordered below: pairings first
    n_measured = len(ttft)
    out: dict[str, float] = {"n_requests": float(n_requests),
                             "n_measured": float(n_measured)}
    # SLO: TPOT is met vacuously by one-token outputs (NaN)
    ok_ttft = ttft <= slo.ttft_s
    ok_tpot = ~(tpot_all > slo.tpot_s)
    n = max(n_measured, 1)
    out["slo_attainment_ttft"] = float(ok_ttft.sum() / n)
    out["slo_attainment_tpot"] = float(ok_tpot.sum() / n)
    out["slo_attainment"] = float((ok_ttft & ok_tpot).sum() / n)
    del ok_ttft, ok_tpot
    out["std_ttft_s"] = float(ttft.std()) if n_measured else math.nan
    out["max_ttft_s"] = float(ttft.max()) if n_measured else math.nan
    if engine.disagg:
        out["mean_transfer_s"] = float(np.mean(transfer)) if n_measured else math.nan
    out["mean_preemptions"] = preemptions / n_measured if n_measured else math.nan
    tpot = tpot_all[~np.isnan(tpot_all)]
    for name, col in (("ttft_s", ttft), ("tpot_s", tpot), ("e2e_s", e2e),
                      ("queue_s", queue)):
        out[f"mean_{name}"] = float(col.mean()) if len(col) else math.nan
        # in place: the columns are this function's (no copy of 8 bytes a request)
        values = np.quantile(col, qs, overwrite_input=True) if len(col) else \
            [math.nan] * len(qs)
        for q, v in zip(qs, values, strict=True):
            out[quantile_key(q, name)] = float(v)
    gaps = int(engine.itl_hist.sum())
    out["mean_itl_s"] = engine.itl_sum_s / gaps if gaps else math.nan
    for q, v in zip(qs, histogram_quantiles(engine.itl_hist, qs), strict=True):
        out[quantile_key(q, "itl_s")] = v
    done, done_tokens, first, second = sums
    backlog = float(first + second)  # the whole window's: the halves' exact sum
    first, second = float(first), float(second)
    out["throughput_rps"] = float(done / span)
    out["throughput_tokens_per_s"] = float(done_tokens / span)
    out["mean_in_system"] = backlog / span
    for pool, c in engine.counters().items():
        out[f"utilisation_{pool}"] = c.busy_s / (c.instances * span)
        out[f"mean_batch_{pool}"] = c.batch_sum / c.steps if c.steps else math.nan
        out[f"kv_occupancy_{pool}"] = c.kv_block_s / (c.instances * c.kv_blocks * span)
        out[f"preemptions_{pool}"] = c.preemptions / span
    out["stable"] = 1.0 if closed_loop or second <= 1.5 * first + 2.0 * (span / 2) else 0.0
    return out
