"""One validation point of the batched serving model: colocated and disaggregated
clusters simulated on the same requests, the batched closed forms beside them.

The dataset has the seed point's layout (:func:`validate.point.run_point`): ``value``,
``ci_low``/``ci_high``, ``rel_error`` and ``verdict`` over ``architecture x source x
statistic``, where ``statistic`` now spans TTFT, TPOT, E2E and SLO attainment, each with
its ``metric``, ``unit`` and ``label`` coordinate; the source besides ``simulation`` is
``closed_form`` (:func:`analytic.batched_estimate`). A statistic the closed forms do not
give yet (P90 TPOT; the colocated forms' percentiles and attainment; chunked prefill
instances in a disaggregated cluster; non-Poisson arrivals) is NaN with verdict ``n/a``:
shown, never guessed.

Stability is the simulation's (every replication's backlog stayed bounded); the
``offered_load`` is the arrival rate over the closed form's stability limit, the scale on
which issue 11 states its accuracy targets, so a point the form wrongly calls unstable
still shows as its error, not as an excluded point.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import xarray as xr

import analytic
from spec import SimConfig

from .point import (
    ARCHITECTURES,
    CDF_PROBS,
    STATISTIC_INFO,
    Thresholds,
    point_dataset,
    simulate_both,
    simulated,
)

#: The statistics a batched point compares (keys of the simulation's summary and, where
#: the closed forms give them, of :func:`analytic.batched_estimate`).
BATCHED_STATISTICS: tuple[str, ...] = (
    "mean_ttft_s", "p50_ttft_s", "p90_ttft_s", "p99_ttft_s", "mean_tpot_s", "p90_tpot_s",
    "mean_e2e_s", "slo_attainment")
#: The analytic source's name in the dataset.
CLOSED_FORM = "closed_form"


def closed_form(workload, cluster, slo=None) -> tuple[dict, str]:
    """:func:`analytic.batched_estimate`, or ``({}, reason)`` where no closed form covers
    the cluster yet (a disaggregated cluster's chunked prefill instances, non-Poisson
    arrivals: the reason names it)."""
    try:
        return analytic.batched_estimate(workload, cluster, slo), ""
    except ValueError as exc:
        return {}, str(exc)


def run_batched_point(config: SimConfig, *, thresholds: Thresholds, engine: str = "fast",
                      confidence: float = 0.95) -> xr.Dataset:
    """Simulate the batched colocated and disaggregated clusters (common random numbers)
    and price both with the closed forms.

    Returns
    -------
    xarray.Dataset
        The seed point's variables (``value``, ``ci_low``, ``ci_high``, ``rel_error``,
        ``verdict``, ``offered_load``, ``utilisation``, ``stable``, ``n_measured``,
        ``ttft_quantile``) plus ``stability_limit_rps`` and ``binding`` (the closed
        form's, per architecture); attrs ``closed_form_<architecture>`` say which form
        priced each architecture, or why none did.
    """
    sims = simulate_both(config, engine, confidence)
    clusters = dict(zip(ARCHITECTURES, replace(config, mode="both").clusters(), strict=True))
    sources = ("simulation", CLOSED_FORM)
    stats = BATCHED_STATISTICS
    n_arch = len(ARCHITECTURES)
    value = np.full((n_arch, len(sources), len(stats)), np.nan)
    ci = np.full((2, n_arch, len(stats)), np.nan)
    load, limit, util, n_measured = (np.full(n_arch, np.nan) for _ in range(4))
    stable = np.zeros(n_arch, dtype=bool)
    binding = ["" for _ in ARCHITECTURES]
    dist = np.full((n_arch, 2, len(CDF_PROBS)), np.nan)
    notes = {}
    rate = config.workload.arrival_rate_per_s
    for a, arch in enumerate(ARCHITECTURES):
        summary = sims[arch].summary
        value[a, 0], ci[:, a], dist[a, 0] = simulated(sims[arch], stats)
        stable[a] = summary["stable"] == 1.0  # every replication's backlog bounded
        util[a] = max(v for k, v in summary.items() if k.startswith("utilisation_"))
        n_measured[a] = summary["n_measured"]
        est, why = closed_form(config.workload, clusters[arch], config.slo)
        notes[f"closed_form_{arch}"] = est.get("method", f"none: {why}")
        for s, stat in enumerate(stats):
            value[a, 1, s] = float(est.get(stat, math.nan))
        limit[a] = float(est.get("stability_limit_rps", math.nan))
        load[a] = rate / limit[a]
        binding[a] = str(est.get("binding") or "")
    units = [STATISTIC_INFO[s][2] for s in stats]
    ds = point_dataset(
        value, ci, stable, thresholds, confidence, sources=sources, statistics=stats,
        analytic_kind=CLOSED_FORM,
        value_attrs={"long_name": "value; its unit is the statistic's unit coordinate"},
        arrays={
            "offered_load": (load, {"units": "1", "long_name": "arrival rate / closed-form "
                                                              "stability limit"}),
            "stability_limit_rps": (limit, {"units": "requests/s",
                                            "long_name": "closed-form stability limit"}),
            "binding": (np.array(binding, dtype=str),
                        {"long_name": "the closed form's binding constraint"}),
            "utilisation": (util, {"units": "1",
                                   "long_name": "simulated busy fraction (busiest pool)"}),
            "n_measured": (n_measured, {"long_name": "measured requests (all replications, "
                                                     "mean)"})},
        stable_meaning="simulated backlog bounded in every replication", dist=dist,
        missing_meaning="-1: reference, no CI, no closed form or failed point",
        attrs={"serving": "batched", **notes})
    ds["statistic"].attrs["units"] = ", ".join(units)
    return ds
