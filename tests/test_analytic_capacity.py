"""Capacity answers of the seed model (``max_rate``, ``min_gpus``, ``best_split``) against
brute force over ``analytic.estimate``: the searches must find what a scan finds, at the
edges too (a loose SLO whose answer is the stability bound, a budget met exactly), and
refuse what they cannot answer with the whole message."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

import analytic
import spec
from tests import reference as ref

WL = spec.Workload(9.0, spec.TokenDist.lognormal(math.log(700), 0.7),
                   spec.TokenDist.lognormal(math.log(120), 0.5))
MONO = spec.MonolithicCluster(4, 8000.0, 2000.0)
DIS = spec.DisaggregatedCluster(2, 2, 8000.0, 2000.0, 1e-5)


def _means(wl: spec.Workload) -> tuple[float, float]:
    """Mean prompt and output tokens from the pmf (spec's, not analytic's)."""
    return ref.pmf_moments(wl.prompt_tokens)[0], ref.pmf_moments(wl.output_tokens)[0]


def _meets(wl, cluster, slo) -> bool:
    est = analytic.estimate(wl, cluster)
    return all((est.mean_ttft_s if k == "mean_ttft_s" else
                est.quantile(float(k[1:-7]) / 100)) <= b for k, b in slo.items())


def _scan_mono(wl, slo) -> int:
    return next(n for n in range(1, 500) if _meets(wl, replace(MONO, num_gpus=n), slo))


def _scan_disagg(wl, slo) -> int:
    for total in range(2, 500):
        if any(_meets(wl, replace(DIS, prefill_gpus=c1, decode_gpus=total - c1), slo)
               for c1 in range(1, total)):
            return total
    raise AssertionError("no total up to 500")


@pytest.mark.parametrize("slo", [
    {"mean_ttft_s": 60.0}, {"p99_ttft_s": 0.6}, {"p90_ttft_s": 0.3, "mean_ttft_s": 0.2},
], ids=["loose: the stability bound", "P99", "P90 and mean"])
def test_min_gpus_is_the_scan(slo):
    ep, eo = _means(WL)
    got = analytic.min_gpus(WL, MONO, slo)
    assert got.num_gpus == _scan_mono(WL, slo)
    split = analytic.min_gpus(WL, DIS, slo)
    total = split.prefill_gpus + split.decode_gpus
    assert total == _scan_disagg(WL, slo)
    assert _meets(WL, split, slo)
    if slo == {"mean_ttft_s": 60.0}:  # fewest GPUs that are stable, by hand
        es = ep / 8000.0 + eo / 2000.0
        assert got.num_gpus == math.floor(9.0 * es) + 1
        assert total == math.floor(9.0 * ep / 8000.0) + 1 + math.floor(9.0 * eo / 2000.0) + 1


@pytest.mark.parametrize(("rate", "bound"), [(9.0, 0.6), (20.0, 0.5)],
                         ids=["3 needed, 2 stable", "6 needed, 4 stable"])
def test_min_gpus_budget_met_exactly_and_one_short(rate, bound):
    """Every budget from the answer up returns the answer; every budget below it is
    refused, including those between two doublings of the search (a search that
    overshoots the budget would return more GPUs than allowed)."""
    wl, slo = WL.with_rate(rate), {"p99_ttft_s": bound}
    need = _scan_mono(wl, slo)
    ep, eo = _means(wl)
    low = math.floor(rate * (ep / 8000.0 + eo / 2000.0)) + 1
    assert low < need < 2 * low  # a budget between two doublings of the search
    for budget in (need, 2 * low, 1000):
        assert analytic.min_gpus(wl, MONO, slo, max_gpus=budget).num_gpus == need, budget
    for budget in range(1, need):
        with pytest.raises(ValueError) as err:
            analytic.min_gpus(wl, MONO, slo, max_gpus=budget)
        assert str(err.value) == (f"slo {slo}: not met with up to max_gpus = {budget}")


def test_min_gpus_budget_below_the_stability_bound_is_refused():
    """A loose SLO met by the fewest stable GPUs: a smaller budget is still refused."""
    slo = {"mean_ttft_s": 60.0}
    low = analytic.min_gpus(WL, MONO, slo).num_gpus
    with pytest.raises(ValueError, match=f"not met with up to max_gpus = {low - 1}$"):
        analytic.min_gpus(WL, MONO, slo, max_gpus=low - 1)


def test_an_slo_an_idle_cluster_misses_is_refused_or_zero():
    idle = analytic.estimate(WL.with_rate(1e-9), MONO).mean_ttft_s
    slo = {"mean_ttft_s": 0.7 * idle}  # missed by 43 %, less than twice
    with pytest.raises(ValueError) as err:
        analytic.min_gpus(WL, MONO, slo)
    assert str(err.value) == (f"slo {slo}: not met even with no queueing (faster GPUs, "
                              "not more, are needed)")
    assert analytic.max_rate(WL, MONO, slo) == 0.0


def test_max_rate_of_an_slo_that_holds_to_saturation_is_just_below_it():
    sat = analytic.saturation_rate_per_s(WL, MONO)
    ep, eo = _means(WL)
    assert sat == pytest.approx(4 / (ep / 8000.0 + eo / 2000.0), rel=1e-9)
    r = analytic.max_rate(WL, MONO, {"mean_ttft_s": 1e9})
    assert r < sat and r == pytest.approx(sat, rel=1e-8)
    dsat = analytic.saturation_rate_per_s(WL, DIS)
    assert dsat == pytest.approx(min(2 * 8000.0 / ep, 2 * 2000.0 / eo), rel=1e-9)


@pytest.mark.parametrize("method", ["kimura", "whitt93"])
def test_max_rate_is_where_the_statistic_meets_its_bound(method):
    slo = {"p90_ttft_s": 0.4, "mean_ttft_s": 0.25}
    r = analytic.max_rate(WL, MONO, slo, method=method)
    worst = max(analytic.estimate(WL.with_rate(r), MONO, method).p90_ttft_s / 0.4,
                analytic.estimate(WL.with_rate(r), MONO, method).mean_ttft_s / 0.25)
    assert worst == pytest.approx(1.0, rel=1e-6)


def test_best_split_table_is_max_rate_of_each_split():
    slo = {"p99_ttft_s": 0.8}
    choice = analytic.best_split(WL, DIS, 5, slo, method="whitt93")
    assert set(choice.max_rate_by_prefill_gpus) == {1, 2, 3, 4}
    for c1, rate in choice.max_rate_by_prefill_gpus.items():
        split = spec.DisaggregatedCluster(c1, 5 - c1, 8000.0, 2000.0, 1e-5)
        assert rate == analytic.max_rate(WL, split, slo, method="whitt93"), c1
    best = max(choice.max_rate_by_prefill_gpus, key=choice.max_rate_by_prefill_gpus.get)
    assert (choice.prefill_gpus, choice.decode_gpus) == (best, 5 - best)
    two = analytic.best_split(WL.with_rate(1.0), DIS, 2, slo)
    assert (two.prefill_gpus, two.decode_gpus) == (1, 1)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: analytic.best_split(WL, MONO, 4, {"p99_ttft_s": 1.0}),
     "cluster: best_split needs a DisaggregatedCluster"),
    (lambda: analytic.best_split(WL, DIS, 1, {"p99_ttft_s": 1.0}),
     "total_gpus = 1: must be a whole number >= 2"),
    (lambda: analytic.best_split(WL, DIS, 4.5, {"p99_ttft_s": 1.0}),
     "total_gpus = 4.5: must be a whole number >= 2"),
    (lambda: analytic.max_rate(WL, MONO, {}),
     "slo: must name at least one statistic, e.g. {'p99_ttft_s': 0.5}"),
    (lambda: analytic.max_rate(WL, MONO, {"p99_e2e_s": 1.0}),
     "slo key 'p99_e2e_s': must be mean_ttft_s or pNN_ttft_s (e.g. p99_ttft_s)"),
    (lambda: analytic.max_rate(WL, MONO, {"p0_ttft_s": 1.0}),
     "slo key 'p0_ttft_s': the percentile must be in (0, 100)"),
    (lambda: analytic.max_rate(WL, MONO, {"p100_ttft_s": 1.0}),
     "slo key 'p100_ttft_s': the percentile must be in (0, 100)"),
    (lambda: analytic.max_rate(WL, MONO, {"p99_ttft_s": 0}),
     "slo['p99_ttft_s'] = 0: must be a finite number > 0 (seconds)"),
    (lambda: analytic.max_rate(WL, MONO, {"mean_ttft_s": "1"}),
     "slo['mean_ttft_s'] = '1': must be a finite number > 0 (seconds)"),
    (lambda: analytic.max_rate(WL, MONO, {"mean_ttft_s": math.inf}),
     "slo['mean_ttft_s'] = inf: must be a finite number > 0 (seconds)"),
])
def test_capacity_refusals_in_full(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message
