"""The residual law of a positive wait (``analytic.residual``) against exact laws computed
here independently: M/M/1 and M/D/1 (Erlang's formula), the equilibrium residual from
the full pmf, the hypoexponential sum, and a Monte Carlo of the exact M/G/1 wait."""

from __future__ import annotations

import math

import numpy as np
import pytest

import analytic
import spec
from analytic import residual as R

X = R.SHAPE_GRID


def _exp_survival(t):
    return np.exp(-np.asarray(t, dtype=float))


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.8, 0.95, 0.995])
@pytest.mark.parametrize("k", [1.0, 2.5])
def test_exponential_service_gives_the_exponential_wait(rho, k):
    """M/M/1: ``R`` is exponential, so is the least of ``k`` of them and their geometric
    sum: the shape is ``e^{-x}`` exactly, at every load and ``k``."""
    assert np.max(np.abs(R.wait_shape(_exp_survival, rho, k) - np.exp(-X))) < 5e-4


def _md1_cdf(t: float, lam: float) -> float:
    """Erlang (1909), M/D/1 with ``D = 1``: ``P(W <= t) = (1 - rho) sum_{k <= t}
    (lam (k - t))^k / k! e^{-lam (k - t)}`` (stable for ``t`` up to about 10)."""
    return (1 - lam) * sum((lam * (k - t)) ** k / math.factorial(k) * math.exp(-lam * (k - t))
                           for k in range(int(math.floor(t)) + 1))


@pytest.mark.parametrize("rho", [0.3, 0.7, 0.9])
def test_deterministic_service_gives_erlangs_md1_law(rho):
    """M/D/1 (``R`` uniform on ``(0, D)``), ``k = 1``: the shape at ``x`` is
    ``P(W > x m | W > 0)`` with ``m = E[W] / rho = D / (2 (1 - rho))``, within 1e-3."""
    shape = R.wait_shape(lambda t: np.clip(1.0 - np.asarray(t, dtype=float), 0.0, 1.0),
                         rho, 1.0)
    m = 1.0 / (2.0 * (1.0 - rho))
    for x in (0.05, 0.2, 0.5, 1.0, 1.5, 2.0):
        t = x * m
        if t > 10:
            continue
        exact = 1.0 - (_md1_cdf(t, rho) - (1.0 - rho)) / rho
        assert np.interp(x, X, shape) == pytest.approx(exact, abs=1e-3), x


def test_heavy_traffic_shape_is_the_exponential():
    shape = R.wait_shape(lambda t: np.clip(1.0 - np.asarray(t, dtype=float), 0.0, 1.0),
                         1.0 - R.HEAVY_TRAFFIC, 1.0)
    np.testing.assert_array_equal(shape, np.exp(-X))


def test_residual_survival_is_the_full_pmf_excess():
    """``P(R > t) = E[(S - t)^+] / E[S]`` summed over the full pmf here: one token law
    exactly; the sum of two (prompt and output, monolithic) through the second law's
    quantised nodes, within 2e-3."""
    p = spec.TokenDist.lognormal(math.log(300), 0.5)
    o = spec.TokenDist.lognormal(math.log(100), 0.6)
    (vp, pp), (vo, po) = p.pmf(), o.pmf()
    pp, po = pp / pp.sum(), po / po.sum()
    # the brute double sum below over the support that holds all but 1e-9 of each law
    cut_p, cut_o = (np.cumsum(x[::-1])[::-1] > 1e-9 for x in (pp, po))
    vp2, pp2, vo2, po2 = vp[cut_p], pp[cut_p], vo[cut_o], po[cut_o]
    one, mean = R.residual_survival(((p, 1000.0),))
    assert mean == pytest.approx(float(vp @ pp) / 1000.0, rel=1e-12)
    t = np.array([0.0, 0.05, 0.3, 0.9, 2.5])
    direct = [float(pp @ np.maximum(vp / 1000.0 - x, 0.0)) / mean for x in t]
    np.testing.assert_allclose(one(t), direct, rtol=1e-10, atol=1e-15)
    two, mean2 = R.residual_survival(((p, 1000.0), (o, 200.0)))
    s = (vp2[:, None] / 1000.0 + vo2[None, :] / 200.0)
    w = pp2[:, None] * po2[None, :]
    assert mean2 == pytest.approx(float(np.sum(w * s)), rel=1e-6)
    direct2 = [float(np.sum(w * np.maximum(s - x, 0.0))) / mean2 for x in t]
    np.testing.assert_allclose(two(t), direct2, atol=2e-3)


def test_interpolated_shapes_are_within_3e_3_of_the_computed_ones():
    wl = spec.default_config().workload
    terms = ((wl.prompt_tokens, 8000.0), (wl.output_tokens, 2000.0))
    rho = np.array([0.05, 0.41, 0.77, 0.93, 0.985])
    k = np.array([1.0, 1.3, 2.2, 1.9, 3.1])
    rows = R.interpolated_shapes(terms, rho, k)
    for i in range(rho.size):
        exact = R.conditional_wait_shape(terms, float(rho[i]), float(k[i]))
        assert np.max(np.abs(rows[i] - exact)) < 3e-3, (rho[i], k[i])


def test_sum_shape_of_two_exponentials_is_hypoexponential():
    """Means 1 and 2: ``P(G1 + G2 > t) = 2 e^{-t/2} - e^{-t}``; equal means 1:
    ``(1 + t) e^{-t}``."""
    e = np.exp(-X)
    rows = R.sum_shape(np.stack([e, e]), np.array([1.0, 1.0]), np.stack([e, e]),
                       np.array([2.0, 1.0]))
    t = 3.0 * X
    np.testing.assert_allclose(rows[0], 2 * np.exp(-t / 2) - np.exp(-t), atol=1e-3)
    t = 2.0 * X
    np.testing.assert_allclose(rows[1], (1 + t) * np.exp(-t), atol=1e-3)


def test_bad_load_or_residuals_are_refused_by_name():
    with pytest.raises(ValueError, match=r"utilisation = 1.0: must be in \[0, 1\)"):
        R.wait_shape(_exp_survival, 1.0, 1.0)
    with pytest.raises(ValueError, match="residuals = 0.5: must be >= 1"):
        R.wait_shape(_exp_survival, 0.5, 0.5)


def test_one_gpu_ttft_quantiles_are_the_exact_mg1_law():
    """Fixed prompts, lognormal outputs (sigma 1.2), one GPU at load 0.7: TTFT is
    ``x + W`` with ``W`` exactly 0 with probability ``1 - rho``, else a geometric(rho) sum
    of equilibrium residuals. A Monte Carlo of that law (400,000 waits; residuals drawn
    as a length-biased service times a uniform) gives each quantile's 99.9 % interval
    from its order statistics (``q +- 3.3 sqrt(q (1 - q) / n)``); the estimate lies in
    it. The gamma law of the same mean and delay probability misses P90 or P99."""
    out = spec.TokenDist.lognormal(math.log(200), 1.2)
    wl = spec.Workload(1.0, spec.TokenDist.fixed(800), out)
    cl = spec.MonolithicCluster(1, 8000.0, 1000.0)
    v, p = out.pmf()
    p = p / p.sum()
    es = 0.1 + float(v @ p) / 1000.0
    rate = 0.7 / es
    est = analytic.estimate(wl.with_rate(rate), cl)
    gamma = analytic.estimate(wl.with_rate(rate), cl, wait_law="gamma")
    rng = np.random.default_rng(20261124)
    n = 400_000
    waiting = rng.random(n) < 0.7
    counts = rng.geometric(0.3, size=int(waiting.sum()))  # P(N = k) = 0.3 * 0.7^(k-1)
    service = 0.1 + v / 1000.0
    lb = service * p / float(service @ p)  # the length-biased service law
    draws = rng.choice(service, size=int(counts.sum()), p=lb)
    residuals = draws * rng.random(draws.size)
    sums = np.add.reduceat(residuals, np.concatenate(([0], np.cumsum(counts)[:-1])))
    wait = np.zeros(n)
    wait[waiting] = sums
    ttft = np.sort(0.1 + 1 / 1000.0 + wait)
    gamma_in = []
    for q in (0.5, 0.9, 0.99):
        half = 3.3 * math.sqrt(q * (1 - q) / n)
        lo, hi = ttft[int((q - half) * n)], ttft[int(math.ceil((q + half) * n))]
        assert lo <= est.quantile(q) <= hi, (q, lo, est.quantile(q), hi)
        gamma_in.append(lo <= gamma.quantile(q) <= hi)
    assert not all(gamma_in)


@pytest.mark.parametrize("k", [1.0, 2.5, 6.0])
def test_no_load_shape_is_the_least_of_k_residuals(k):
    """At ``rho = 0`` the sum is one term, the least of ``k`` residuals. Deterministic
    service (``R`` uniform on ``(0, 1)``): ``P(M > t) = (1 - t)^k``, mean ``1 / (k + 1)``,
    so the shape is ``(1 - x / (k + 1))^k``: within 1e-3, or 5e-3 at ``k = 1``, where the
    density of ``M`` jumps from 1 to 0 at ``t = 1`` and the grid (steps of ``E[M] / 32``)
    smooths the jump over a step."""
    shape = R.wait_shape(lambda t: np.clip(1.0 - np.asarray(t, dtype=float), 0.0, 1.0),
                         0.0, k)
    exact = np.clip(1.0 - X / (k + 1.0), 0.0, None) ** k
    assert np.max(np.abs(shape - exact)) < (5e-3 if k == 1.0 else 1e-3)


@pytest.mark.parametrize("mode", ["mono", "disagg"])
def test_quantiles_of_a_grid_in_chunks_are_the_whole_grids(mode, monkeypatch):
    """Large grids are solved QUANTILE_CHUNK points at a time (bounded memory): the same
    numbers as all at once, in the grid's order (to 1e-12: the root finder's matrix
    products run over however many points are still unsolved, and BLAS rounds a row
    differently with the matrix's size)."""
    import analytic.ttft as T
    from spec import default_config

    cfg = default_config()
    cluster = cfg.cluster_mono if mode == "mono" else cfg.cluster_disagg
    rates = np.linspace(0.5, 4.5, 23)[:, None]
    kw = {"num_gpus": np.array([[2, 4, 8]])} if mode == "mono" else \
        {"decode_gpus": np.array([[2, 4, 8]])}
    whole = analytic.estimate(cfg.workload, cluster, arrival_rate_per_s=rates, **kw)
    want = whole.quantile([0.5, 0.99])
    monkeypatch.setattr(T, "QUANTILE_CHUNK", 7)
    pieces = analytic.estimate(cfg.workload, cluster, arrival_rate_per_s=rates, **kw)
    got = pieces.quantile([0.5, 0.99])
    assert got.shape == (2, 23, 3) and np.isfinite(got).sum() > 60
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_a_mean_only_estimate_of_a_million_points_builds_no_shapes():
    """The residual law's shapes cost 8 KiB a point: they are built for quantiles only,
    so mean TTFT over 10^6 points stays within a few hundred bytes a point."""
    import tracemalloc

    from spec import default_config

    cfg = default_config()
    rates = np.linspace(0.1, 4.0, 10_000)[:, None]
    warm = analytic.estimate(cfg.workload, cfg.cluster_mono, arrival_rate_per_s=rates[:10],
                             num_gpus=np.arange(1, 101)[None, :])  # caches warm
    assert warm.mean_ttft_s.shape == (10, 100)
    tracemalloc.start()
    est = analytic.estimate(cfg.workload, cfg.cluster_mono, arrival_rate_per_s=rates,
                            num_gpus=np.arange(1, 101)[None, :])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert est.mean_ttft_s.shape == (10_000, 100)
    assert est._law["shapes"]._rows == [None, None]
    assert peak < 400 * 10**6, peak  # 400 bytes a point; the shapes alone would be 8,192


def test_the_exact_sum_of_two_exponential_waits_at_equal_and_near_rates():
    """``exponential`` wait law, both pools waiting: the hypoexponential law of
    ``G1 + G2``, Erlang-2 ``(1 + y/m) e^{-y/m}`` at equal means, and the two-rate formula
    at means 10^-9 apart (the form the equal-rate branch must agree with)."""
    from analytic.ttft import _wait_sf

    y = np.array([[0.0, 0.3, 1.0, 2.5, 7.0]])
    m = np.array([[0.8]])
    one = np.ones((1, 1))
    a, b = np.array([[0.6]]), np.array([[0.3]])
    got = _wait_sf(y, a, m, one, b, m, one, exact_sum=True)
    e = np.exp(-y / 0.8)
    erlang2 = (1.0 + y / 0.8) * e
    want = 0.6 * 0.7 * e + 0.4 * 0.3 * e + 0.6 * 0.3 * erlang2
    np.testing.assert_allclose(got, want, rtol=1e-13)
    m2 = m * (1 + 1e-9)
    near = _wait_sf(y, a, m, one, b, m2, one, exact_sum=True)
    t1, t2 = 1 / 0.8, 1 / (0.8 * (1 + 1e-9))
    two_rate = (t2 * np.exp(-t1 * y) - t1 * np.exp(-t2 * y)) / (t2 - t1)
    np.testing.assert_allclose(near, 0.42 * e + 0.12 * np.exp(-y / m2) + 0.18 * two_rate,
                               rtol=1e-6)
    far = _wait_sf(y, a, m, one, b, 2 * m, one, exact_sum=True)
    t2 = 1 / 1.6
    hypo = (t2 * np.exp(-t1 * y) - t1 * np.exp(-t2 * y)) / (t2 - t1)
    np.testing.assert_allclose(far, 0.42 * e + 0.12 * np.exp(-y / 1.6) + 0.18 * hypo,
                               rtol=1e-13)


@pytest.mark.parametrize("q", [0.0, 1.0, -0.1, 1.5, [0.5, 1.0]])
def test_a_quantile_outside_zero_one_is_refused_by_name(q):
    cfg = spec.default_config()
    est = analytic.estimate(cfg.workload, cfg.cluster_mono)
    with pytest.raises(ValueError, match=r"^q = .*: must be in \(0, 1\)$"):
        est.quantile(q)


def test_quantile_returns_a_float_for_one_q_and_an_axis_for_a_list():
    cfg = spec.default_config()
    one = analytic.estimate(cfg.workload, cfg.cluster_mono)
    assert isinstance(one.quantile(0.9), float)
    assert np.shape(one.quantile([0.9])) == (1,)
    assert one.quantile([0.5, 0.9])[1] == one.quantile(0.9) > one.quantile(0.5)
    grid = analytic.estimate(cfg.workload, cfg.cluster_mono,
                             arrival_rate_per_s=np.array([1.0, 2.0, 3.0]))
    assert grid.quantile(0.9).shape == (3,)
    assert grid.quantile([0.5, 0.9]).shape == (2, 3)
    np.testing.assert_array_equal(grid.quantile([0.5, 0.9])[1], grid.quantile(0.9))


def test_exact_sum_near_equal_fast_rates_takes_the_equal_rate_form():
    """Rates 10^4/s that differ by 1e-12 relative: the two-rate formula would divide by
    1e-8 and lose about 1e-4 to cancellation; the equal-rate (Erlang-2) branch, whose own
    error here is about 1e-11, must be taken (tolerance ``1e-7`` of the larger rate)."""
    from analytic.ttft import _wait_sf

    y = np.array([[0.5, 1.0, 3.0, 8.0]]) * 1e-4
    m1, m2 = np.array([[1e-4]]), np.array([[1e-4 * (1 + 1e-12)]])
    one = np.ones((1, 1))
    got = _wait_sf(y, one, m1, one, one, m2, one, exact_sum=True)
    np.testing.assert_allclose(got, (1.0 + y / 1e-4) * np.exp(-y / 1e-4), rtol=1e-9)


def test_degenerate_waits_raise_no_warning_and_keep_their_zero_weight():
    """A pool where nobody waits may carry a zero mean: its gamma law is the atom at 0
    (``P(G > y) = 0`` for ``y > 0``), a subnormal mean overflows to the same answer, and
    the sum's term is dropped where its weight ``a b`` is 0 (warnings are errors here)."""
    from analytic.ttft import _gamma_isf, _gamma_sf, _wait_sf

    assert _gamma_sf(np.array(1.0), np.array(0.0), np.array(1.0)) == 0.0
    assert _gamma_sf(np.array(1.0), np.array(1e-300), np.array(1e-10)) == 0.0
    assert np.isnan(_gamma_sf(np.array(0.0), np.array(0.0), np.array(1.0)))  # 0/0: unused
    assert np.isnan(_gamma_sf(np.array(1.0), np.array(1.0), np.array(0.0)))
    assert np.isnan(_gamma_isf(np.array(0.1), np.array(1.0), np.array(0.0)))
    assert _gamma_isf(np.array(1e-300), np.array(1e307), np.array(1.0)) == np.inf
    y = np.array([[1.0, 2.0]])
    zero, half, one = np.zeros((1, 1)), np.full((1, 1), 0.5), np.ones((1, 1))
    for exact in (True, False):
        got = _wait_sf(y, zero, zero, one, half, one, one, exact_sum=exact)
        np.testing.assert_allclose(got, 0.5 * np.exp(-y), rtol=1e-14)


@pytest.mark.parametrize("scv", [0.3, 1.0, 2.5])
def test_gamma_law_helpers_are_scipys_gamma(scv):
    """``_gamma_sf`` and ``_gamma_isf`` against ``scipy.stats.gamma`` of shape ``1/scv``
    and scale ``mean scv`` (mean and SCV as named), and inverse to each other."""
    from scipy import stats

    from analytic.ttft import _gamma_isf, _gamma_sf

    mean = np.array([0.2, 1.5])
    law = stats.gamma(1.0 / scv, scale=mean * scv)
    y = np.array([0.1, 2.0])
    np.testing.assert_allclose(_gamma_sf(y, mean, np.full(2, scv)), law.sf(y), rtol=1e-12)
    p = np.array([0.3, 1e-4])
    x = _gamma_isf(p, mean, np.full(2, scv))
    np.testing.assert_allclose(x, law.isf(p), rtol=1e-10)
    np.testing.assert_allclose(_gamma_sf(x, mean, np.full(2, scv)), p, rtol=1e-10)


def test_tabulated_exponential_shapes_give_the_exact_sum_law():
    """Where the residual law's rows are the exponential (``active`` false), the tabulated
    ``P(W1 + W2 > y)`` must be the exponential law's, hypoexponential sum included
    (``_wait_sf`` with ``exact_sum``, itself checked above against Erlang's forms), and
    each component's tail end must be its exponential quantile to the grid's step."""
    from analytic.ttft import _Shapes, _wait_sf

    n = 3
    pool = ((), np.full(n, 0.5), np.ones(n), np.zeros(n, dtype=bool))
    shapes = _Shapes.of((n,), pool, pool)
    np.testing.assert_allclose(shapes.first, np.exp(-R.SHAPE_GRID)[None, :].repeat(n, 0))
    index = np.arange(n)
    a = np.array([0.6, 0.0, 0.3])[:, None]
    b = np.array([0.2, 0.7, 0.9])[:, None]
    m1 = np.array([0.5, 0.5, 0.05])[:, None]
    m2 = np.array([1.5, 0.4, 0.2])[:, None]
    y = np.array([0.0, 0.2, 0.9, 2.5, 6.0])[None, :].repeat(n, 0)
    one = np.ones((n, 1))
    want = _wait_sf(y, a, m1, one, b, m2, one, exact_sum=True)
    np.testing.assert_allclose(shapes.wait_sf(y, index, a, m1, b, m2), want, atol=2e-4)
    tail = 1e-3
    ends = shapes.wait_isf(tail, index, a[:, 0], m1[:, 0], b[:, 0], m2[:, 0])
    step = np.max(np.diff(R.SHAPE_GRID))
    for end, m, w in ((ends[0], m1[:, 0], a[:, 0]), (ends[1], m2[:, 0], b[:, 0])):
        np.testing.assert_allclose(end, np.where(w > 0, -np.log(tail) * m, 0.0),
                                   atol=step * m.max())
    t1, t2 = 1 / m1[:, 0], 1 / m2[:, 0]
    s12 = end_sf = (t2 * np.exp(-t1 * ends[2]) - t1 * np.exp(-t2 * ends[2])) / (t2 - t1)
    both = a[:, 0] * b[:, 0] > 0
    assert np.all(s12[both] <= tail * 1.001) and np.all(ends[2][~both] == 0.0), end_sf
    # and not far past it: one grid step of the sum's scale back, the law is above tail
    back = ends[2] - step * (m1[:, 0] + m2[:, 0])
    s_back = (t2 * np.exp(-t1 * back) - t1 * np.exp(-t2 * back)) / (t2 - t1)
    assert np.all(s_back[both] > tail * 0.999)


def test_summary_and_dataset_types_and_labels():
    """The summary names its wait law and linking; ``stable`` is a bool for one point and
    an array for a grid; a grid's dataset carries its coordinates; ``quantile`` returns
    a Python float for one ``q``; unknown attributes raise AttributeError naming them."""
    cfg = spec.default_config()
    one = analytic.estimate(cfg.workload, cfg.cluster_disagg)
    s = one.summary(quantiles=(0.9,))
    assert (s["wait_law"], s["linking"]) == (one.wait_law, one.linking) == ("residual",
                                                                              "timescale")
    assert type(s["stable"]) is bool and type(one.quantile(0.9)) is float
    rates = np.array([1.0, 2.0, 3.0])
    grid = analytic.estimate_grid(cfg.workload, cfg.cluster_disagg, method="whitt93",
                                  arrival_rate_per_s=rates)
    assert grid.method == "whitt93"
    np.testing.assert_array_equal(grid.summary()["stable"], [True, True, True])
    ds = grid.to_xarray(quantiles=(0.5,))
    np.testing.assert_array_equal(ds["arrival_rate_per_s"].values, rates)
    assert ds["mean_ttft_s"].dims == ("arrival_rate_per_s",)
    for name in ("p5x_ttft_s", "nonexistent"):
        with pytest.raises(AttributeError, match=f"^{name}$"):
            getattr(one, name)
