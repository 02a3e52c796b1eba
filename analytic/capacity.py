"""Capacity questions: the largest rate, the fewest GPUs and the best prefill:decode split
that meet a TTFT service-level objective (SLO), by root-finding on the closed forms.

An SLO is a mapping of statistic to bound in seconds, e.g. ``{"p99_ttft_s": 0.5}`` or
``{"mean_ttft_s": 0.2, "p90_ttft_s": 0.4}`` (all must hold). Every statistic used rises
with the arrival rate and falls with more GPUs, so the answers are found by bracketing
and root-finding (rate) or exponential plus binary search (GPU counts), never by scanning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import brentq

from spec import DisaggregatedCluster, MonolithicCluster, Workload

from .queues import DEFAULT_METHOD
from .ttft import _moments, estimate

_STAT = re.compile(r"^(mean|p(\d+(?:\.\d+)?))_ttft_s$")


def _parse_slo(slo: Mapping[str, float]) -> list[tuple[str, float | None, float]]:
    """``[(stat, q or None, bound_s)]``; refuses unknown statistics and bad bounds."""
    if not slo:
        raise ValueError("slo: must name at least one statistic, e.g. {'p99_ttft_s': 0.5}")
    items = []
    for key, bound in slo.items():
        m = _STAT.match(key)
        if not m:
            raise ValueError(f"slo key {key!r}: must be mean_ttft_s or pNN_ttft_s "
                             "(e.g. p99_ttft_s)")
        q = None if m.group(1) == "mean" else float(m.group(2)) / 100.0
        if q is not None and not 0.0 < q < 1.0:
            raise ValueError(f"slo key {key!r}: the percentile must be in (0, 100)")
        if not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
            raise ValueError(f"slo[{key!r}] = {bound!r}: must be a finite number > 0 (seconds)")
        items.append((key, q, float(bound)))
    return items


def _worst_margin(workload, cluster, items, method, **grid) -> np.ndarray:
    """``max over SLO items of stat / bound - 1`` (<= 0 means the SLO holds)."""
    est = estimate(workload, cluster, method, **grid)
    margins = []
    for _, q, bound in items:
        value = est.mean_ttft_s if q is None else est.quantile(q)
        margins.append(np.asarray(value, dtype=float) / bound - 1.0)
    return np.max(margins, axis=0)


def saturation_rate_per_s(workload: Workload,
                          cluster: MonolithicCluster | DisaggregatedCluster) -> float:
    """The arrival rate at which the busiest pool reaches offered load 1."""
    ep, _ = _moments(workload.prompt_tokens)
    eo, _ = _moments(workload.output_tokens)
    if isinstance(cluster, MonolithicCluster):
        es = ep / cluster.prefill_tokens_per_s + eo / cluster.decode_tokens_per_s
        return cluster.num_gpus / es
    return min(cluster.prefill_gpus * cluster.prefill_tokens_per_s / ep,
               cluster.decode_gpus * cluster.decode_tokens_per_s / eo)


def max_rate(workload: Workload, cluster: MonolithicCluster | DisaggregatedCluster,
             slo: Mapping[str, float], method: str = DEFAULT_METHOD) -> float:
    """Largest arrival rate (req/s) at which ``cluster`` meets ``slo``.

    Brent's method on ``stat(rate) / bound - 1`` over ``(0, saturation)``. Returns ``0.0``
    when even an idle cluster misses the SLO.

    Examples
    --------
    >>> import spec
    >>> cfg = spec.default_config()
    >>> r = max_rate(cfg.workload, cfg.cluster_mono, {"p99_ttft_s": 1.0})
    >>> 4 < r < 9
    True
    """
    items = _parse_slo(slo)
    sat = saturation_rate_per_s(workload, cluster)

    def f(rate: float) -> float:
        return float(_worst_margin(workload.with_rate(rate), cluster, items, method))

    lo, hi = sat * 1e-9, sat * (1.0 - 1e-9)
    if f(lo) > 0:
        return 0.0
    if f(hi) <= 0:
        return hi
    return float(brentq(f, lo, hi, xtol=1e-9 * sat, rtol=1e-10))


def min_gpus(workload: Workload, cluster: MonolithicCluster | DisaggregatedCluster,
             slo: Mapping[str, float], method: str = DEFAULT_METHOD,
             max_gpus: int = 1_000_000) -> MonolithicCluster | DisaggregatedCluster:
    """The smallest cluster like ``cluster`` that meets ``slo`` at the workload's rate.

    Monolithic: fewest ``num_gpus``. Disaggregated: fewest ``prefill_gpus + decode_gpus``,
    and among the splits of that total the one with the lowest worst-case margin. GPU
    counts never raise waits, so exponential then binary search on the count is exact.

    Raises
    ------
    ValueError
        If even an idle cluster misses the SLO (no number of GPUs helps).
    """
    items = _parse_slo(slo)
    idle = _worst_margin(workload.with_rate(1e-12), cluster, items, method)
    if idle > 0:
        raise ValueError(f"slo {dict(slo)}: not met even with no queueing "
                         "(faster GPUs, not more, are needed)")
    mono = isinstance(cluster, MonolithicCluster)
    rate = workload.arrival_rate_per_s
    ep, _ = _moments(workload.prompt_tokens)
    eo, _ = _moments(workload.output_tokens)

    def best(total: int) -> tuple[float, MonolithicCluster | DisaggregatedCluster]:
        if mono:
            c = replace(cluster, num_gpus=total)
            return float(_worst_margin(workload, c, items, method)), c
        if total < 2:
            return math.inf, cluster
        c1 = np.arange(1, total)
        m = _worst_margin(workload, cluster, items, method, prefill_gpus=c1,
                          decode_gpus=total - c1)
        i = int(np.argmin(m))
        return float(m[i]), replace(cluster, prefill_gpus=int(c1[i]),
                                    decode_gpus=int(total - c1[i]))

    if mono:
        es = ep / cluster.prefill_tokens_per_s + eo / cluster.decode_tokens_per_s
        low = int(math.floor(rate * es)) + 1
    else:
        low = (int(math.floor(rate * ep / cluster.prefill_tokens_per_s)) + 1
               + int(math.floor(rate * eo / cluster.decode_tokens_per_s)) + 1)
    hi = min(low, max_gpus)
    while best(hi)[0] > 0:  # doubling, capped at the budget (which itself may suffice)
        if hi >= max_gpus:
            raise ValueError(f"slo {dict(slo)}: not met with up to max_gpus = {max_gpus}")
        hi = min(2 * hi, max_gpus)
    lo = max(low - 1, hi // 2)
    while hi - lo > 1:  # invariant: hi meets the SLO, lo does not (or is below stability)
        mid = (lo + hi) // 2
        if best(mid)[0] <= 0:
            hi = mid
        else:
            lo = mid
    return best(hi)[1]


@dataclass(frozen=True)
class SplitChoice:
    """The best prefill:decode split of a GPU budget, and each split's capacity."""

    prefill_gpus: int
    decode_gpus: int
    max_rate_per_s: float
    max_rate_by_prefill_gpus: dict[int, float]


def best_split(workload: Workload, cluster: DisaggregatedCluster, total_gpus: int,
               slo: Mapping[str, float], method: str = DEFAULT_METHOD) -> SplitChoice:
    """The prefill:decode split of ``total_gpus`` that sustains the highest rate under
    ``slo`` (each split's capacity by :func:`max_rate`)."""
    if not isinstance(cluster, DisaggregatedCluster):
        raise ValueError("cluster: best_split needs a DisaggregatedCluster")
    if int(total_gpus) != total_gpus or total_gpus < 2:
        raise ValueError(f"total_gpus = {total_gpus!r}: must be a whole number >= 2")
    rates = {c1: max_rate(workload, replace(cluster, prefill_gpus=c1,
                                            decode_gpus=int(total_gpus) - c1), slo, method)
             for c1 in range(1, int(total_gpus))}
    c1 = max(rates, key=lambda k: rates[k])
    return SplitChoice(c1, int(total_gpus) - c1, rates[c1], rates)
