"""Closed forms where theory is exact: to 1e-9 relative or better, against independent
references (exact rationals from sympy, mpmath, textbook formulas written here)."""

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy as sp

import analytic
from analytic import symbolic
from tests.reference import erlang_c as textbook_erlang_c

REL = 1e-9


def _erlang_c_exact(c: int, a: Fraction) -> Fraction:
    """Erlang C in exact rational arithmetic (the textbook sum)."""
    top = a**c / math.factorial(c) * Fraction(c) / (c - a)
    return top / (sum(a**k / Fraction(math.factorial(k)) for k in range(c)) + top)


@pytest.mark.parametrize(("c", "a"), [
    pytest.param(3, Fraction(2), id="C(3, 2) = 4/9"),
    pytest.param(4, Fraction(16, 5), id="M/M/4 rho 0.8"),
    pytest.param(1, Fraction(1, 2), id="M/M/1: C = rho"),
    pytest.param(2, Fraction(1), id="M/M/2 a = 1: C = 1/3"),
    pytest.param(17, Fraction(151, 10), id="17 servers"),
])
def test_erlang_c_exact_rationals(c, a):
    expected = float(_erlang_c_exact(c, a))
    assert analytic.erlang_c(c, float(a)) == pytest.approx(expected, rel=1e-13)


def test_issue_reference_values():
    assert analytic.erlang_c(3, 2.0) == pytest.approx(4 / 9, rel=1e-15)
    assert round(analytic.erlang_c(4, 3.2), 6) == 0.596432
    assert round(analytic.mmc_wait(3.2, 1.0, 4), 6) == 0.745541


@pytest.mark.parametrize("c", [100, 1000, 10_000])
def test_erlang_c_many_servers_against_mpmath(c):
    """Erlang B recursion at 60 digits with mpmath as the reference: 1e-12 relative."""
    mpmath.mp.dps = 60
    for rho in (0.5, 0.9, 0.99):
        a = mpmath.mpf(rho) * c
        b = mpmath.mpf(1)
        for k in range(1, c + 1):
            b = a * b / (k + a * b)
        ref = c * b / (c - a * (1 - b))
        got = analytic.erlang_c(c, float(rho * c))
        assert got == pytest.approx(float(ref), rel=1e-12), f"c={c} rho={rho}"


def test_erlang_c_textbook_agrees_on_a_grid():
    for c in range(1, 12):
        for a in np.linspace(0.05, c - 0.05, 7):
            assert analytic.erlang_c(c, a) == pytest.approx(textbook_erlang_c(c, a), rel=1e-12)


@pytest.mark.parametrize("method", list(analytic.METHODS))
def test_every_method_is_pollaczek_khinchine_at_one_server(method):
    lam, es = 0.7, 1.3 / 0.7 * 0.5  # rho = 0.65
    for cs2 in (0.0, 0.3, 1.0, 2.5):
        pk = lam * es**2 * (1 + cs2) / (2 * (1 - lam * es))
        assert analytic.mean_wait(lam, es, cs2, 1, method=method) == pytest.approx(pk, rel=REL)


def test_mdc_reproduces_pk_and_issue_values():
    for rho in (0.1, 0.5, 0.9, 0.98):
        w = analytic.mdc_wait(rho, 1.0, 1)
        assert w.mean == pytest.approx(rho / (2 * (1 - rho)), rel=REL)
        assert w.delay_probability == pytest.approx(rho, rel=REL)
    w = analytic.mdc_wait(3.2, 1.0, 4)
    assert round(w.mean, 6) == 0.386095
    assert round(w.delay_probability, 6) == 0.578282


def _md1_cdf_erlang(t: float, lam: float, d: float) -> float:
    """Erlang's exact M/D/1 waiting-time CDF:
    ``P(W <= t) = (1 - rho) sum_{k=0}^{floor(t/D)} (lam (k D - t))^k / k! e^{-lam (k D - t)}``
    (evaluated in 50-digit arithmetic: the alternating sum cancels badly in floats)."""
    mpmath.mp.dps = 50
    lam_, d_, t_ = mpmath.mpf(lam), mpmath.mpf(d), mpmath.mpf(t)
    s = sum((lam_ * (k * d_ - t_)) ** k / mpmath.factorial(k) * mpmath.exp(-lam_ * (k * d_ - t_))
            for k in range(int(math.floor(t / d)) + 1))
    return float((1 - lam_ * d_) * s)


@pytest.mark.parametrize("rho", [0.5, 0.85])
def test_md1_waiting_time_distribution_is_erlangs(rho):
    w = analytic.mdc_wait(rho, 1.0, 1)
    for t in (0.0, 0.3, 1.0, 1.7, 4.2, 9.9):
        assert w.cdf(t) == pytest.approx(_md1_cdf_erlang(t, rho, 1.0), rel=1e-9, abs=1e-12)
    for q in (0.6, 0.9, 0.99):
        t = w.quantile(q)
        assert _md1_cdf_erlang(t, rho, 1.0) == pytest.approx(q, rel=1e-9)


def test_mdc_quantile_inverts_cdf_at_many_servers():
    w = analytic.mdc_wait(0.9 * 16, 0.5, 16)
    for q in (0.5, 0.9, 0.99, 0.999):
        t = w.quantile(q)
        if t > 0:
            assert w.cdf(t) == pytest.approx(q, rel=1e-9)


def test_wait_quantile_is_exact_for_mmc_and_mdc():
    lam, es, c = 3.2, 1.0, 4
    C = analytic.erlang_c(c, lam * es)
    for q in (0.5, 0.9, 0.99):
        # M/M/c: P(W > t) = C exp(-(c/E[S] - lam) t)
        exact = max(0.0, math.log(C / (1 - q)) / (c / es - lam))
        assert analytic.wait_quantile(q, lam, es, 1.0, c) == pytest.approx(exact, rel=REL,
                                                                            abs=1e-15)
        assert analytic.wait_quantile(q, lam, es, 0.0, c) == pytest.approx(
            analytic.mdc_wait(lam, es, c).quantile(q), rel=REL)


def test_burke_tandem_gives_erlang_c_at_the_second_station():
    """M/M/2 -> ./M/3: the departures of an M/M/c station are Poisson (cd2 = 1), so
    every two-moment method gives the M/M/3 wait at the decode station."""
    lam = 1.2
    cd2 = analytic.departure_scv(lam, 1.0, 1.0, 2)
    assert cd2 == pytest.approx(1.0, rel=1e-15)
    for method in ("allen_cunneen", "cosmetatos", "whitt93", "kimura", "mmc"):
        w = analytic.mean_wait(lam, 2.0, 1.0, 3, method=method, arrival_scv=cd2)
        assert w == pytest.approx(analytic.mmc_wait(lam, 2.0, 3), rel=REL), method


def test_distserve_md1_prefill_ttft():
    """Fixed prompts on one prefill GPU: the prefill part of the estimate is DistServe's
    ``D + lam D^2 / (2 (1 - lam D))`` exactly."""
    from spec import DisaggregatedCluster, TokenDist, Workload

    d, lam = 0.1, 7.0
    est = analytic.estimate(Workload(lam, TokenDist.fixed(800), TokenDist.fixed(10)),
                            DisaggregatedCluster(1, 8, 8000.0, 1000.0))
    prefill_part = est.mean_ttft_s - est.mean_wait_s["decode"] - est.first_token_s
    md1 = sp.lambdify((symbolic.lam, symbolic.D), symbolic.md1_ttft())
    assert prefill_part == pytest.approx(md1(lam, d), rel=REL)
    assert prefill_part == pytest.approx(d + lam * d**2 / (2 * (1 - lam * d)), rel=REL)


def test_mono_with_fixed_tokens_uses_exact_mdc_law():
    from spec import MonolithicCluster, TokenDist, Workload

    cl = MonolithicCluster(4, 1000.0, 100.0)
    est = analytic.estimate(Workload(2.5, TokenDist.fixed(1000), TokenDist.fixed(50)), cl)
    s = 1.0 + 0.5
    law = analytic.mdc_wait(2.5, s, 4)
    offset = 1.0 + 0.01
    assert est.p99_ttft_s == pytest.approx(law.quantile(0.99) + offset, rel=REL)
    assert est.mean_ttft_s == pytest.approx(
        analytic.mean_wait(2.5, s, 0.0, 4, method="kimura") + offset, rel=REL)


# ------------------------------------------------------------------ bounded exact M/D/c
def test_exact_mdc_work_is_bounded_and_named():
    """Near saturation the chain's states grow like 1 / (1 - rho): past the bound the
    exact law stops with the point named instead of asking for GiBs (rho 1 - 1e-6 used
    to take 24 GB)."""
    from analytic.mdc import MDcTooLarge, mdc_wait

    mdc_wait(0.999 * 64, 1.0, 64)  # inside the bound: still exact
    with pytest.raises(MDcTooLarge, match=r"exact M/D/4 at rho = 0.999999: its chain needs "
                       r"[\d,]+ states x \d+ transitions .* bounded at 10,000,000 entries"):
        mdc_wait(0.999999 * 4, 1.0, 4)


def test_past_the_bound_kimura_exact_is_kimura_with_a_named_warning():
    """At such points ``kimura_exact`` uses Cosmetatos's M/D/c wait, i.e. it equals
    ``kimura`` there (a finite number, no memory blow-up), and says so."""
    from analytic.mdc import ExactFallbackWarning
    from analytic.queues import mean_wait, wait_quantile

    lam = np.array([0.5 * 4, 0.999999 * 4])
    with pytest.warns(ExactFallbackWarning) as caught:
        w = mean_wait(lam, 1.0, 0.0, 4, method="kimura_exact")
        kim = mean_wait(lam, 1.0, 0.0, 4, method="kimura")  # its P(W > 0) falls back too
    assert any("kimura_exact: the exact M/D/c chain is too large at 1 point(s) (M/D/4 at "
               "rho = 0.999999); Cosmetatos's M/D/c approximation" in str(c.message)
               for c in caught)
    assert w[1] == kim[1] and np.isfinite(w[1])
    assert w[0] != kim[0]  # the exact law where it fits (Cosmetatos is off by about 1 %)
    with pytest.warns(ExactFallbackWarning) as caught:
        q = wait_quantile(0.99, lam, 1.0, 0.0, 4)
    said = " | ".join(str(w.message) for w in caught)
    assert "wait quantile" in said and "Erlang C's delay probability" in said
    assert np.all(np.isfinite(q)) and q[1] > q[0]


# ------------------------------------------------------------------ TTFT percentiles
@pytest.mark.parametrize("rate", [2.0, 6.0, 8.0])
def test_ttft_percentiles_are_the_quantiles_of_the_stated_law(rate):
    """A monolithic TTFT is ``W + P / r_p + 1 / r_d`` with the wait ``W`` an atom
    ``1 - p`` at zero plus ``p`` times an exponential of mean ``E[W] / p`` (Tijms; exact
    for M/M/c; ``wait_law="exponential"``), independent of the prompt. Here that law's
    quantiles are found by direct summation over the exact token pmf and bisection,
    independently of the estimator's quantised solver: they agree within 0.2 %. A
    conditional-wait rate of ``1 / E[W]`` (instead of ``p / E[W]``) or a quantile at the
    wrong probability is off by far more."""
    import spec

    cfg = spec.default_config()
    cl = cfg.cluster_mono
    est = analytic.estimate(cfg.workload.with_rate(rate), cl, wait_law="exponential")
    p, w = float(est.delay_probability["gpu"]), float(est.mean_wait_s["gpu"])
    k, pk = cfg.workload.prompt_tokens.pmf()
    x = k / cl.prefill_tokens_per_s + 1.0 / cl.decode_tokens_per_s
    theta = p / w

    def cdf(t: float) -> float:
        y = t - x
        ok = y >= 0
        return float(np.sum(pk[ok] * ((1 - p) + p * -np.expm1(-theta * y[ok]))))

    summary = est.summary([0.5, 0.9, 0.99])
    for q in (0.5, 0.9, 0.99):
        lo, hi = 0.0, float(x.max() + 50 * w / p)
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
        assert summary[f"p{round(q * 100)}_ttft_s"] == pytest.approx(hi, rel=2e-3), q
