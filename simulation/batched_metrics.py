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


def _backlog_integral(arrival: np.ndarray, done: np.ndarray, lo: float, hi: float) -> float:
    """Request-seconds in the system within ``[lo, hi)``: the sum of the overlaps."""
    return float(np.clip(np.minimum(done, hi) - np.maximum(arrival, lo), 0.0, None).sum())


def summarise_batched(times: BatchedTimes, engine, window_s: tuple[float, float],
                      quantiles: Sequence[float], slo: SLO, *, closed_loop: bool = False
                      ) -> dict[str, float]:
    """One replication's statistics (keys as the seed model's, plus TPOT, ITL, SLO).

    ``engine`` is what either batched engine leaves: ``counters()``, ``itl_hist``,
    ``itl_sum_s`` and ``disagg``."""
    lo, hi = window_s
    span = hi - lo
    qs = sorted(set(quantiles) | set(BASE_QUANTILES))
    m = times.measured
    out: dict[str, float] = {"n_requests": float(len(times.arrival_s)),
                             "n_measured": float(np.count_nonzero(m))}
    ttft, e2e = times.ttft_s[m], times.e2e_s[m]
    tpot = times.tpot_s[m]
    tpot = tpot[~np.isnan(tpot)]
    for name, col in (("ttft_s", ttft), ("tpot_s", tpot), ("e2e_s", e2e),
                      ("queue_s", (times.prefill_start_s - times.arrival_s)[m])):
        out[f"mean_{name}"] = float(col.mean()) if len(col) else math.nan
        for q, v in zip(qs, np.quantile(col, qs) if len(col) else [math.nan] * len(qs),
                        strict=True):
            out[quantile_key(q, name)] = float(v)
    out["std_ttft_s"] = float(ttft.std()) if len(ttft) else math.nan
    out["max_ttft_s"] = float(ttft.max()) if len(ttft) else math.nan
    gaps = int(engine.itl_hist.sum())
    out["mean_itl_s"] = engine.itl_sum_s / gaps if gaps else math.nan
    for q, v in zip(qs, histogram_quantiles(engine.itl_hist, qs), strict=True):
        out[quantile_key(q, "itl_s")] = v
    if engine.disagg:
        out["mean_transfer_s"] = float(np.mean((times.transfer_end_s - times.transfer_start_s
                                                )[m])) if m.any() else math.nan
    out["mean_preemptions"] = float(times.preemptions[m].mean()) if m.any() else math.nan
    # SLO: TPOT is met vacuously by one-token outputs
    ok_ttft = ttft <= slo.ttft_s
    ok_tpot = np.nan_to_num(times.tpot_s[m], nan=0.0) <= slo.tpot_s
    n = max(len(ttft), 1)
    out["slo_attainment_ttft"] = float(ok_ttft.sum() / n)
    out["slo_attainment_tpot"] = float(ok_tpot.sum() / n)
    out["slo_attainment"] = float((ok_ttft & ok_tpot).sum() / n)
    finish = times.last_token_s
    done = (finish >= lo) & (finish < hi)
    out["throughput_rps"] = float(np.count_nonzero(done) / span)
    out["throughput_tokens_per_s"] = float(times.output_tokens[done].sum() / span)
    out["mean_in_system"] = _backlog_integral(times.arrival_s, finish, lo, hi) / span
    for pool, c in engine.counters().items():
        out[f"utilisation_{pool}"] = c.busy_s / (c.instances * span)
        out[f"mean_batch_{pool}"] = c.batch_sum / c.steps if c.steps else math.nan
        out[f"kv_occupancy_{pool}"] = c.kv_block_s / (c.instances * c.kv_blocks * span)
        out[f"preemptions_{pool}"] = c.preemptions / span
    mid = lo + span / 2
    first = _backlog_integral(times.arrival_s, finish, lo, mid)
    second = _backlog_integral(times.arrival_s, finish, mid, hi)
    out["stable"] = 1.0 if closed_loop or second <= 1.5 * first + 2.0 * (span / 2) else 0.0
    return out
