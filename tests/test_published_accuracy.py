"""Each approximation's published accuracy, asserted against independent references: long
simulations of M/G/c stations committed in ``tests/data/accuracy_reference.json`` (made
by ``scripts/make_accuracy_references.py``: 10 replications of 160,000 service times'
worth of requests per point, 95 % Student-t intervals), and the exact M/D/c law.

A claim holds at a point when the interval ``error +- CI`` (relative) meets the claimed
band: the simulation's own noise is never counted against a formula. The claims are the
ones ``ANALYTIC_NOTES.md`` and the docstrings state, over the range they state; what the
references show beyond it is in ``docs/`` (the accuracy tables), not hidden here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import analytic
from tests import reference as ref

DATA = json.loads((Path(__file__).parent / "data" / "accuracy_reference.json").read_text())
POINTS = DATA["points"]


def _args(p):
    return p["arrival_rate_per_s"], p["service_mean_s"], p["service_scv"], p["servers"]


def _within(value: float, ref_value: float, ci: float, lo: float, hi: float) -> bool:
    """``value / ref - 1`` in ``[lo, hi]`` up to the reference's relative CI."""
    err, half = value / ref_value - 1.0, ci / ref_value
    return err - half <= hi and err + half >= lo


def test_the_references_reproduce_pollaczek_khinchine():
    """The references themselves: at one server the exact M/G/1 wait and ``P(W > 0) = rho``
    lie inside every interval (a wrong simulation or seed handling would fail here)."""
    ones = [p for p in POINTS if p["servers"] == 1]
    assert len(ones) == 6
    for p in ones:
        lam, es, cs2, _ = _args(p)
        pk = ref.pk_mean_wait(lam, es, cs2)
        assert abs(pk - p["mean_wait_s"]) <= p["mean_wait_s_ci95"], p
        assert abs(p["rho"] - p["delay_probability"]) <= p["delay_probability_ci95"], p


@pytest.mark.parametrize(("method", "lo", "hi", "max_scv", "source"), [
    ("kimura", -0.06, 0.11, 4.0, "Kimura (1994): -6 % to +11 %, c <= 32, cs2 0.25 to 4"),
    ("allen_cunneen", -0.20, 1.00, 4.0, "Allen: -20 % smooth to +100 % heavy-tailed"),
    ("whitt93", -0.10, 0.10, 1.0, "Whitt (1993): good for cs2 <= 1 (10 %)"),
    ("whitt93", -0.10, 0.40, 4.0, "Whitt (1993): up to +40 % heavy-tailed"),
])
def test_mean_wait_within_its_published_band(method, lo, hi, max_scv, source):
    checked = 0
    for p in POINTS:
        if p["service_scv"] > max_scv:
            continue
        w = analytic.mean_wait(*_args(p), method=method)
        assert _within(w, p["mean_wait_s"], p["mean_wait_s_ci95"], lo, hi), (
            source, p["servers"], p["service_scv"], p["rho"], w / p["mean_wait_s"] - 1)
        checked += 1
    assert checked >= 6


def test_kimura_is_the_best_mean_over_the_grid():
    """The notes call Kimura the best known here: its worst error over the references
    (cs2 <= 4) is below every other method's."""
    worst = {}
    for method in ("allen_cunneen", "cosmetatos", "whitt93", "kimura"):
        worst[method] = max(abs(analytic.mean_wait(*_args(p), method=method)
                                / p["mean_wait_s"] - 1) for p in POINTS
                            if p["service_scv"] <= 4.0)
    assert min(worst, key=worst.get) == "kimura", worst


def test_p90_wait_within_five_percent_for_smooth_service_under_load():
    """Tijms / Whitt (1993): the atom-plus-exponential wait law puts P90 within about 5 %
    for ``cs2 <= 1`` under load (here rho 0.8, the points where P90 > 0)."""
    checked = 0
    for p in POINTS:
        if p["service_scv"] > 1.0 or p["rho"] < 0.75:
            continue
        q = analytic.wait_quantile(0.9, *_args(p))
        assert _within(q, p["p90_wait_s"], p["p90_wait_s_ci95"], -0.05, 0.05), p
        checked += 1
    assert checked == 3


@pytest.mark.parametrize("servers", [2, 4, 8, 16, 32])
@pytest.mark.parametrize("rho", [0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
def test_cosmetatos_mdc_against_the_exact_law(servers, rho):
    """Cosmetatos (1975) claims about 1 % for rho >= 0.5. Against the exact M/D/c wait
    (Crommelin's chain, solved independently in the tests) that holds for c <= 8, and for
    any c up to 32 at rho >= 0.8; at 16 and 32 servers and rho 0.5 to 0.7 it is off by
    up to 3.2 % (the docstring says so): asserted as 3.5 % there."""
    exact = ref.mdc_mean_wait(rho * servers, 1.0, servers)
    approx = analytic.cosmetatos_mdc_wait(rho * servers, 1.0, servers)
    tol = 0.01 if servers <= 8 or rho >= 0.8 else 0.035
    assert np.isfinite(exact) and exact > 0
    assert approx == pytest.approx(exact, rel=tol), (approx / exact - 1)
