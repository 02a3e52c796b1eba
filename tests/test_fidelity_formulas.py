"""The closed-form refinements of issue 14, each against an independent reference: the
conditional-wait SCV and the gamma wait law, the time-scale linking of the decode pool's
arrivals, the relaxation time, and the service skew from the token laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

import analytic
import spec
from analytic.mdc import mdc_wait
from analytic.ttft import _service_skew, _wait_sf
from tests import reference as ref

WL = spec.Workload(3.0, spec.TokenDist.lognormal(math.log(600), 0.8),
                   spec.TokenDist.lognormal(math.log(300), 1.0))


def _md1_conditional_scv(rho: float) -> float:
    """SCV of the M/D/1 wait given that it is positive, from the exact Crommelin law
    (``analytic.mdc``) by numerical integration of its survival function."""
    w = mdc_wait(rho, 1.0, 1)
    upper = 80.0 * w.mean / w.delay_probability + 5.0

    def sf(t: float) -> float:
        return 1.0 - float(w.cdf(t))

    m1 = integrate.quad(sf, 0.0, upper, limit=400)[0]
    m2 = 2.0 * integrate.quad(lambda t: t * sf(t), 0.0, upper, limit=400)[0]
    p = w.delay_probability
    return (m2 / p) / (m1 / p) ** 2 - 1.0


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_conditional_scv_is_exact_for_md1(rho):
    """Deterministic service (``kappa = 1``) on one server: the formula's ``(1 + 2 rho)/3``
    is the exact law's, within 1e-3 (a coefficient other than 4/3 or a slope other than
    2 rho would miss by more than 0.03)."""
    exact = _md1_conditional_scv(rho)
    assert analytic.conditional_wait_scv(rho, 1.0, 1) == pytest.approx(exact, abs=1e-3)


@pytest.mark.parametrize("servers", [1, 2, 8, 64])
@pytest.mark.parametrize("rho", [0.1, 0.5, 0.95])
def test_conditional_scv_is_one_for_exponential_service(rho, servers):
    """M/M/c's conditional wait is exponential (SCV 1) at every load and size."""
    assert analytic.conditional_wait_scv(rho, 1.5, servers) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("rho", "kappa", "c"), [
    (0.3, 1.0, 4), (0.7, 1.0, 16), (0.5, 2.0, 1), (0.5, 2.0, 9), (0.2, 12.0, 1),
    (0.9, 5.0, 25), (0.6, 1.2, 2)])
def test_conditional_scv_matches_its_transcription(rho, kappa, c):
    """Damping by ``sqrt(c)`` and the cap at 1.5 (both empirical, see the docstring)."""
    got = analytic.conditional_wait_scv(rho, kappa, c)
    assert got == pytest.approx(ref.conditional_wait_scv(rho, kappa, c), rel=1e-12)


@pytest.mark.parametrize("servers", [2, 4, 16])
@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_conditional_scv_is_near_the_exact_mdc_value(servers, rho):
    """Against the exact M/D/c law (integrated numerically) the damped value is within
    0.25 of the true SCV (the undamped M/G/1 value is off by up to 0.3 at 16 servers)."""
    w = mdc_wait(rho * servers, 1.0, servers)
    p = w.delay_probability
    t = np.linspace(0.0, 60.0 * w.mean / p + 5.0, 4001)  # 3e-4 of the SCV (vs 120,001)
    sf = 1.0 - np.asarray(w.cdf(t))
    m1, m2 = np.trapezoid(sf, t) / p, 2.0 * np.trapezoid(t * sf, t) / p
    exact = m2 / m1**2 - 1.0
    assert analytic.conditional_wait_scv(rho, 1.0, servers) == pytest.approx(exact, abs=0.25)


def test_relaxation_time_matches_its_transcription_and_is_inf_when_unstable():
    for args in ((3.0, 0.5, 0.7, 2, 1.0), (10.0, 0.3, 2.0, 4, 0.6), (0.5, 1.0, 0.0, 1, 1.0)):
        assert analytic.relaxation_time(*args) == pytest.approx(ref.relaxation_time(*args),
                                                               rel=1e-12)
    assert math.isinf(analytic.relaxation_time(4.0, 0.5, 1.0, 2))


@pytest.mark.parametrize(("rate", "c1", "c2"), [(3.0, 1, 3), (8.0, 2, 6), (1.0, 1, 1),
                                                (20.0, 4, 12)])
def test_linked_arrival_scv_matches_its_transcription(rate, c1, c2):
    es1, cs1, es2, cs2 = 0.05, 0.1, 0.2, 0.6
    got = analytic.linked_arrival_scv(rate, es1, cs1, c1, es2, cs2, c2)
    assert got == pytest.approx(ref.linked_arrival_scv(rate, es1, cs1, c1, es2, cs2, c2),
                                rel=1e-12)


def test_linked_arrival_scv_moves_from_qna_to_the_input_with_the_downstream_time_scale():
    """A very fast, lightly loaded downstream station sees QNA's departure SCV; a slow or
    nearly saturated one sees the Poisson input's 1; with Poisson output (M/M/c
    upstream) both are 1."""
    qna = analytic.departure_scv(10.0, 0.08, 0.05, 1)
    fast = analytic.linked_arrival_scv(10.0, 0.08, 0.05, 1, 1e-6, 0.05, 1)
    slow = analytic.linked_arrival_scv(10.0, 0.08, 0.05, 1, 0.0999999, 0.05, 1)
    assert fast == pytest.approx(qna, rel=1e-3)
    assert slow == pytest.approx(1.0, abs=1e-3)
    assert qna < fast or fast == pytest.approx(qna)
    assert analytic.linked_arrival_scv(10.0, 0.08, 1.0, 1, 0.05, 0.3, 1) == 1.0
    assert math.isinf(analytic.linked_arrival_scv(20.0, 0.08, 0.05, 1, 0.01, 0.05, 1))


def test_estimate_links_the_decode_pool_by_time_scale_by_default():
    cl = spec.DisaggregatedCluster(2, 3, 9000.0, 1500.0, 3e-5)
    est = analytic.estimate(WL, cl)
    (ep, vp), (eo, vo) = ref.pmf_moments(WL.prompt_tokens), ref.pmf_moments(WL.output_tokens)
    es1, es2, cs1, cs2 = ep / 9000.0, eo / 1500.0, vp / ep**2, vo / eo**2
    ca2 = ref.linked_arrival_scv(3.0, es1, cs1, 2, es2, cs2, 3)
    assert est.linking == "timescale"
    assert est.decode_arrival_scv == pytest.approx(ca2, rel=1e-7)
    w2 = ref.two_moment_mean_wait("kimura", 3.0, es2, cs2, 3, ca2)
    assert est.mean_wait_s["decode"] == pytest.approx(w2, rel=1e-7)
    poisson = analytic.estimate(WL, cl, linking="poisson")
    assert poisson.decode_arrival_scv == 1.0
    assert poisson.mean_wait_s["decode"] == pytest.approx(
        ref.two_moment_mean_wait("kimura", 3.0, es2, cs2, 3, 1.0), rel=1e-7)


@pytest.mark.parametrize("laws", [
    (("prompt", 8000.0),), (("output", 2000.0),), (("prompt", 8000.0), ("output", 2000.0))])
def test_service_skew_from_raw_moments_matches_direct_convolution(laws):
    small = {"prompt": spec.TokenDist.lognormal(math.log(60), 0.6),
             "output": spec.TokenDist.lognormal(math.log(40), 0.9)}
    pairs = [(small[name], r) for name, r in laws]
    expected = ref.skew_of_sum(pairs)
    got = _service_skew(*pairs)
    assert got == pytest.approx(expected, rel=1e-6)


def test_service_skew_of_a_fixed_length_is_one():
    assert _service_skew((spec.TokenDist.fixed(500), 1.0)) == pytest.approx(1.0)


def test_wait_survival_is_the_stated_gamma_mixture():
    """Each component against scipy.stats.gamma; the both-wait component is the gamma
    with the sum's mean and variance."""
    y = np.linspace(0.0, 5.0, 11)
    a, m1, s1, b, m2, s2 = 0.3, 0.4, 1.7, 0.6, 0.9, 0.5
    g1 = stats.gamma(1 / s1, scale=m1 * s1).sf(y)
    g2 = stats.gamma(1 / s2, scale=m2 * s2).sf(y)
    m, v = m1 + m2, s1 * m1**2 + s2 * m2**2
    g12 = stats.gamma(m**2 / v, scale=v / m).sf(y)
    expected = a * (1 - b) * g1 + (1 - a) * b * g2 + a * b * g12
    got = _wait_sf(y, a, m1, s1, b, m2, s2)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


def test_exponential_sum_is_the_exact_hypoexponential():
    y = np.linspace(0.0, 4.0, 9)
    m1, m2 = 0.5, 0.8
    # P(E1 + E2 > y) by numerical convolution
    conv = [integrate.quad(lambda u, yy=yy: np.exp(-u / m1) / m1 * np.exp(-(yy - u) / m2),
                           0.0, yy)[0] + np.exp(-yy / m1) for yy in y]
    got = _wait_sf(y, 1.0, m1, 1.0, 1.0, m2, 1.0, exact_sum=True)
    np.testing.assert_allclose(got, conv, rtol=1e-8, atol=1e-12)


def test_fixed_prompt_ttft_quantile_is_the_gamma_wait_quantile():
    """Fixed prompts: ``TTFT = x + W``, so each quantile is ``x`` plus the gamma-law wait
    quantile with the SCV of :func:`analytic.conditional_wait_scv` (scipy's gamma)."""
    wl = spec.Workload(1.5, spec.TokenDist.fixed(800), spec.TokenDist.lognormal(
        math.log(200), 1.0))
    cl = spec.MonolithicCluster(1, 8000.0, 1000.0)
    est = analytic.estimate(wl, cl, wait_law="gamma")
    x = 800 / 8000.0 + 1 / 1000.0
    skew = ref.skew_of_sum([(wl.prompt_tokens, 8000.0), (wl.output_tokens, 1000.0)])
    scv = ref.conditional_wait_scv(float(est.utilisation["gpu"]), skew, 1)
    assert abs(scv - 1.0) > 0.1  # the law is not the exponential here
    for q in (0.5, 0.9, 0.99):
        w_q = ref.gamma_wait_quantile(q, est.mean_wait_s["gpu"],
                                      est.delay_probability["gpu"], scv)
        # the solver stops within 1e-6 s; the skew's pmf sum and raw moments differ ~1e-9
        assert est.quantile(q) == pytest.approx(x + w_q, rel=5e-6), q


def test_bad_choices_are_refused_by_name():
    cfg = spec.default_config()
    with pytest.raises(ValueError, match=r"wait_law = 'weibull': must be one of residual, gamma"):
        analytic.estimate(cfg.workload, cfg.cluster_mono, wait_law="weibull")
    with pytest.raises(ValueError, match=r"linking = 'x': must be one of timescale"):
        analytic.estimate(cfg.workload, cfg.cluster_disagg, linking="x")
    with pytest.raises(ValueError, match="servers"):
        analytic.conditional_wait_scv(0.5, 1.0, 0)


@pytest.mark.parametrize("wait_law", ["gamma", "exponential"])
def test_disaggregated_quantiles_are_those_of_the_stated_two_wait_law(wait_law):
    """Fixed prompts make ``X`` one value, so each TTFT quantile is ``x`` plus a quantile of
    ``W1 + W2``: built here from scipy's laws, the both-wait part the gamma with the sum's
    mean and variance (gamma law) or the exact hypoexponential (exponential law); each
    pool's SCV from its own load, service skew and size (1 prefill, 4 decode GPUs)."""
    from scipy import optimize

    wl = spec.Workload(6.0, spec.TokenDist.fixed(1200), spec.TokenDist.lognormal(
        math.log(150), 1.1))
    cl = spec.DisaggregatedCluster(1, 4, 10_000.0, 1000.0)
    est = analytic.estimate(wl, cl, wait_law=wait_law)
    a, b = float(est.delay_probability["prefill"]), float(est.delay_probability["decode"])
    m1 = float(est.mean_wait_s["prefill"]) / a
    m2 = float(est.mean_wait_s["decode"]) / b
    if wait_law == "gamma":
        s1 = ref.conditional_wait_scv(float(est.utilisation["prefill"]), 1.0, 1)
        s2 = ref.conditional_wait_scv(float(est.utilisation["decode"]),
                                      ref.skew_of_sum([(wl.output_tokens, 1.0)]), 4)
        assert s2 > 1.1 and s1 < 0.95  # both differ from the exponential here
        m, v = m1 + m2, s1 * m1**2 + s2 * m2**2
        g1 = stats.gamma(1 / s1, scale=m1 * s1).sf
        g2 = stats.gamma(1 / s2, scale=m2 * s2).sf
        g12 = stats.gamma(m * m / v, scale=v / m).sf
    else:
        def g1(y):
            return math.exp(-y / m1)

        def g2(y):
            return math.exp(-y / m2)

        def g12(y):
            return (m1 * math.exp(-y / m1) - m2 * math.exp(-y / m2)) / (m1 - m2)

    def sf(y: float) -> float:
        return float(a * (1 - b) * g1(y) + (1 - a) * b * g2(y) + a * b * g12(y))

    x = 1200 / 10_000.0 + 1 / 1000.0
    for q in (0.9, 0.99):
        w_q = optimize.brentq(lambda y, q=q: sf(y) - (1 - q), 0.0, 1e4, xtol=1e-12)
        assert est.quantile(q) == pytest.approx(x + w_q, rel=5e-6), q


def test_disaggregated_quantiles_are_those_of_the_residual_law_composed():
    """The default wait law, composed as stated: fixed prompts make ``X`` one value ``x``,
    so each TTFT quantile is ``x`` plus a quantile of ``W1 + W2`` with
    ``P(W1 + W2 > y) = a(1-b) G1 + (1-a) b G2 + a b G12``, where ``G1`` is the prefill
    pool's residual-law shape (its service the prompt law, its load, its 1 GPU), ``G2``
    the decode pool's (the output law, its load, its 4 GPUs), each scaled to its
    conditional mean, and ``G12`` the shape of their sum (analytic.residual's functions,
    the building blocks; this test checks which block goes where and with what weight)."""
    import numpy as np
    from scipy import optimize

    from analytic import residual

    wl = spec.Workload(6.0, spec.TokenDist.fixed(1200), spec.TokenDist.lognormal(
        math.log(150), 1.1))
    cl = spec.DisaggregatedCluster(1, 4, 10_000.0, 1000.0)
    est = analytic.estimate(wl, cl)  # wait_law residual, the default
    a, b = float(est.delay_probability["prefill"]), float(est.delay_probability["decode"])
    m1 = float(est.mean_wait_s["prefill"]) / a
    m2 = float(est.mean_wait_s["decode"]) / b
    assert 0.2 < a < 1 and 0.05 < b < 1  # both pools wait sometimes
    row1 = residual.interpolated_shapes(((wl.prompt_tokens, 1.0),),
                                        np.array([float(est.utilisation["prefill"])]),
                                        residual.servers_to_residuals(np.array([1.0])))
    row2 = residual.interpolated_shapes(((wl.output_tokens, 1.0),),
                                        np.array([float(est.utilisation["decode"])]),
                                        residual.servers_to_residuals(np.array([4.0])))
    row12 = residual.sum_shape(row1, np.array([m1]), row2, np.array([m2]))

    def g(row, scale, y):
        return float(residual.shape_survival(np.array([[y]]), np.array([[scale]]), row)[0, 0])

    def sf(y: float) -> float:
        return (a * (1 - b) * g(row1, m1, y) + (1 - a) * b * g(row2, m2, y)
                + a * b * g(row12, m1 + m2, y))

    x = 1200 / 10_000.0 + 1 / 1000.0
    for q in (0.9, 0.99):
        w_q = optimize.brentq(lambda y, q=q: sf(y) - (1 - q), 0.0, 50.0, xtol=1e-12)
        assert est.quantile(q) == pytest.approx(x + w_q, rel=1e-6), q
