"""Every closed form of ``analytic.queues`` and its composition into TTFT, checked point by
point against scalar transcriptions of the papers (``tests/reference.py``), one vectorised
call over a grid that visits every branch (caps on/off, ``ca2`` above, equal to and below
``cs2``, one server, light and heavy load), and every refusal message in full.

Which wrong formula each test catches: a changed constant, operator or branch in any of
the methods (the reference is independent code), a mixed-up element order in the
vectorised Erlang C, a wrong service moment in the estimate, a dropped ``method=``."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import analytic
import spec
from analytic.queues import METHODS
from tests import reference as ref

# every branch: c = 1 (P-K unless ca2 != 1), gamma capped at 0.24 (light load, c = 16),
# Cosmetatos's g capped at 1 (rho 0.2, c = 16), cbar above and below 1
SERVERS = (1, 2, 5, 16)
RHO = (0.2, 0.6, 0.93)
CS2 = (0.0, 0.3, 1.0, 2.5)
CA2 = (0.4, 1.0, 1.8)
GRID = list(itertools.product(SERVERS, RHO, CS2, CA2))
MEAN_S = 0.7


def _grid_arrays():
    c, rho, cs2, ca2 = (np.array(v, dtype=float) for v in zip(*GRID, strict=True))
    return c * rho / MEAN_S, c, cs2, ca2


def test_grid_reaches_every_branch():
    """The grid is only as good as the branches it visits."""
    g = [ref.cosmetatos_g(rho, c) for c, rho, _, _ in GRID if c > 1]
    assert max(g) > 1.0 and min(g) < 0.24  # both caps on and off
    cbar = [(a + s) / 2 for _, _, s, a in GRID]
    assert min(cbar) < 1.0 < max(cbar)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "kimura_exact"])
def test_mean_wait_is_the_published_formula_at_every_point(method):
    lam, c, cs2, ca2 = _grid_arrays()
    got = analytic.mean_wait(lam, MEAN_S, cs2, c, method=method, arrival_scv=ca2)
    for i, (ci, rho, s, a) in enumerate(GRID):
        want = ref.two_moment_mean_wait(method, lam[i], MEAN_S, s, ci, a)
        assert got[i] == pytest.approx(want, rel=1e-9, abs=1e-15), (method, ci, rho, s, a)


@pytest.mark.parametrize(("name", "fn"), [
    ("allen_cunneen", analytic.allen_cunneen_wait), ("cosmetatos", analytic.cosmetatos_wait),
    ("whitt93", analytic.whitt93_wait), ("kimura", analytic.kimura_wait),
])
def test_each_named_function_is_its_registry_method(name, fn):
    lam, c, cs2, ca2 = _grid_arrays()
    got = fn(lam, MEAN_S, cs2, c, ca2)
    want = [ref.two_moment_mean_wait(name, *args) for args in
            zip(lam, [MEAN_S] * len(GRID), cs2, c.astype(int), ca2, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)


def test_mdc_and_mmc_and_pk_functions():
    lam, c, _, _ = _grid_arrays()
    np.testing.assert_allclose(
        analytic.cosmetatos_mdc_wait(lam, MEAN_S, c),
        [ref.mdc_wait_cosmetatos(x, MEAN_S, int(k)) for x, k in zip(lam, c, strict=True)],
        rtol=1e-12)
    np.testing.assert_allclose(
        analytic.mmc_wait(lam, MEAN_S, c),
        [ref.mmc_mean_wait(x, MEAN_S, int(k)) for x, k in zip(lam, c, strict=True)], rtol=1e-12)
    # Erlang C on the unsorted grid: the code sorts by c and must put results back
    np.testing.assert_allclose(
        analytic.erlang_c(c, lam * MEAN_S),
        [ref.erlang_c(int(k), x * MEAN_S) for x, k in zip(lam, c, strict=True)], rtol=1e-12)
    for rho, cs2 in itertools.product(RHO, CS2):
        assert analytic.pk_wait(rho / MEAN_S, MEAN_S, cs2) == pytest.approx(
            ref.pk_mean_wait(rho / MEAN_S, MEAN_S, cs2), rel=1e-12)
    assert math.isinf(analytic.pk_wait(1.0 / MEAN_S, MEAN_S, 0.5))


def test_departure_scv_is_qna():
    lam, c, cs2, ca2 = _grid_arrays()
    got = analytic.departure_scv(lam, MEAN_S, cs2, c, ca2)
    want = [ref.qna_departure_scv(x, MEAN_S, s, int(k), a)
            for x, k, s, a in zip(lam, c, cs2, ca2, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert math.isinf(analytic.departure_scv(4.0, 1.0, 0.5, 4))  # rho = 1


def test_delay_probability_is_erlang_c_or_exact_mdc():
    lam, c, cs2, _ = _grid_arrays()
    got = analytic.delay_probability(lam, MEAN_S, c, cs2)
    for i, (ci, _, s, _) in enumerate(GRID):
        if s == 0.0 and ci > 1:  # deterministic service: Crommelin's chain, solved apart
            want = ref.mdc_delay_probability(lam[i], MEAN_S, ci)
        else:
            want = ref.erlang_c(ci, lam[i] * MEAN_S)
        assert got[i] == pytest.approx(want, rel=1e-9), (ci, s)
    assert analytic.delay_probability(0.0, 1.0, 4, 0.0) == 0.0
    assert analytic.delay_probability(4.0, 1.0, 4, 0.0) == 1.0  # rho = 1: Erlang C's 1


@pytest.mark.parametrize("method", ["kimura", "whitt93"])
def test_wait_quantile_is_the_atom_plus_exponential_law(method):
    lam, c, cs2, ca2 = _grid_arrays()
    for q in (0.3, 0.9, 0.99):
        got = analytic.wait_quantile(q, lam, MEAN_S, cs2, c, method=method, arrival_scv=ca2)
        for i, (ci, rho, s, a) in enumerate(GRID):
            if s == 0.0 and a == 1.0:
                continue  # M/D/c: the exact law (tests/test_analytic_exact.py)
            w = ref.two_moment_mean_wait(method, lam[i], MEAN_S, s, ci, a)
            p = (ref.mdc_delay_probability(lam[i], MEAN_S, ci) if s == 0.0 and ci > 1
                 else ref.erlang_c(ci, lam[i] * MEAN_S))  # delay_probability's rule
            want = ref.exponential_wait_quantile(q, w, p)
            assert got[i] == pytest.approx(want, rel=1e-9, abs=1e-12), (q, ci, rho, s, a)
    # at and above saturation
    assert math.isinf(analytic.wait_quantile(0.5, 2.0, 1.0, 0.5, 2, method=method))


@pytest.mark.parametrize("q", [0.0, 1.0, -0.1, 1.5, math.nan, math.inf])
def test_wait_quantile_refuses_q_outside_the_open_unit_interval(q):
    with pytest.raises(ValueError) as err:
        analytic.wait_quantile(q, 1.0, 1.0, 0.5, 2)
    assert str(err.value) == f"q = {q!r}: must be in (0, 1)"


# ------------------------------------------------------------------ refusals, in full
@pytest.mark.parametrize(("call", "message"), [
    (lambda: analytic.erlang_c(0, 1.0), "servers = 0.0: must be a whole number >= 1"),
    (lambda: analytic.erlang_c(1.5, 1.0), "servers = 1.5: must be a whole number >= 1"),
    (lambda: analytic.erlang_c(2, -1.0), "offered_load = -1.0: must be a finite number >= 0"),
    (lambda: analytic.mean_wait(-1.0, 1.0, 1.0, 2),
     "arrival_rate = -1.0: must be a finite number >= 0"),
    (lambda: analytic.mean_wait(1.0, 0.0, 1.0, 2),
     "service_mean = 0.0: must be a finite number > 0"),
    (lambda: analytic.mean_wait(1.0, 1.0, -1.0, 2),
     "service_scv = -1.0: must be a finite number >= 0"),
    (lambda: analytic.mean_wait(1.0, 1.0, 1.0, 2, arrival_scv=math.inf),
     "arrival_scv = inf: must be a finite number >= 0"),
    (lambda: analytic.mean_wait(1.0, 1.0, 1.0, 2, method="nope"),
     "method = 'nope': must be one of mmc, allen_cunneen, cosmetatos, whitt93, kimura, "
     "kimura_exact"),
    (lambda: analytic.pk_wait(1.0, 1.0, -0.5), "service_scv = -0.5: must be a finite number >= 0"),
])
def test_refusals_name_the_field_and_its_range(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value) == message


# ------------------------------------------------------------------ composition into TTFT
WL = spec.Workload(3.0, spec.TokenDist.lognormal(math.log(600), 0.8),
                   spec.TokenDist.lognormal(math.log(150), 0.6))


@pytest.mark.parametrize("method", ["kimura", "whitt93", "allen_cunneen"])
def test_monolithic_estimate_is_one_mgc_station(method):
    cl = spec.MonolithicCluster(3, 9000.0, 1500.0)
    rate = np.array([1.0, 4.0, 7.0])
    est = analytic.estimate(WL, cl, method=method, arrival_rate_per_s=rate)
    (ep, vp), (eo, vo) = ref.pmf_moments(WL.prompt_tokens), ref.pmf_moments(WL.output_tokens)
    es = ep / 9000.0 + eo / 1500.0
    cs2 = (vp / 9000.0**2 + vo / 1500.0**2) / es**2
    for i, lam in enumerate(rate):
        w = ref.two_moment_mean_wait(method, lam, es, cs2, 3)
        assert est.mean_wait_s["gpu"][i] == pytest.approx(w, rel=1e-9)
        assert est.mean_ttft_s[i] == pytest.approx(w + ep / 9000.0 + 1 / 1500.0, rel=1e-9)
        assert est.utilisation["gpu"][i] == pytest.approx(lam * es / 3, rel=1e-9)
        assert est.delay_probability["gpu"][i] == pytest.approx(
            ref.erlang_c(3, lam * es), rel=1e-9)
    assert est.mean_prefill_s == pytest.approx(ep / 9000.0, rel=1e-9)
    assert est.first_token_s == pytest.approx(1 / 1500.0, rel=1e-12)
    assert est.mean_transfer_s == 0.0 and est.decode_arrival_scv is None
    assert est.mode == "mono" and est.method == method


@pytest.mark.parametrize("method", ["kimura", "whitt93"])
def test_disaggregated_estimate_is_two_stations_linked_by_qna(method):
    cl = spec.DisaggregatedCluster(2, 3, 9000.0, 1500.0, 3e-5)
    est = analytic.estimate(WL, cl, method=method, linking="qna")
    (ep, vp), (eo, vo) = ref.pmf_moments(WL.prompt_tokens), ref.pmf_moments(WL.output_tokens)
    es1, es2 = ep / 9000.0, eo / 1500.0
    cs1, cs2 = vp / ep**2, vo / eo**2
    w1 = ref.two_moment_mean_wait(method, 3.0, es1, cs1, 2)
    ca2 = ref.qna_departure_scv(3.0, es1, cs1, 2, 1.0)
    w2 = ref.two_moment_mean_wait(method, 3.0, es2, cs2, 3, ca2)
    assert est.decode_arrival_scv == pytest.approx(ca2, rel=1e-9)
    assert est.mean_wait_s["prefill"] == pytest.approx(w1, rel=1e-9)
    assert est.mean_wait_s["decode"] == pytest.approx(w2, rel=1e-9)
    assert est.mean_transfer_s == pytest.approx(3e-5 * ep, rel=1e-9)
    assert est.mean_ttft_s == pytest.approx(w1 + ep * (1 / 9000.0 + 3e-5) + w2 + 1 / 1500.0,
                                            rel=1e-9)
    assert est.utilisation == pytest.approx({"prefill": 3.0 * es1 / 2, "decode": 3.0 * es2 / 3})
    assert est.delay_probability["prefill"] == pytest.approx(ref.erlang_c(2, 3.0 * es1))
    assert est.delay_probability["decode"] == pytest.approx(ref.erlang_c(3, 3.0 * es2))


def test_saturation_exactly_at_load_one_is_unstable():
    """Fixed 1,000-token prompts at 1,000 tokens/s and 100 outputs at 100 tokens/s: 2 s a
    request, so 2 req/s on 4 GPUs (or 1 req/s on each 1-GPU pool) is load 1 exactly."""
    wl = spec.Workload(2.0, spec.TokenDist.fixed(1000), spec.TokenDist.fixed(100))
    mono = analytic.estimate(wl, spec.MonolithicCluster(4, 1000.0, 100.0))
    assert mono.utilisation["gpu"] == 1.0
    assert mono.stable is False or mono.stable == 0
    assert math.isinf(mono.mean_ttft_s) and math.isinf(mono.p50_ttft_s)
    for c1, c2 in ((2, 3), (3, 2)):  # each pool saturated in turn, the other not
        dis = analytic.estimate(wl, spec.DisaggregatedCluster(c1, c2, 1000.0, 100.0))
        assert not dis.stable and math.isinf(dis.mean_ttft_s), (c1, c2)
    ok = analytic.estimate(wl, spec.DisaggregatedCluster(3, 3, 1000.0, 100.0))
    assert ok.stable and math.isfinite(ok.mean_ttft_s)


def test_fixed_prompt_random_output_uses_the_atom_plus_exponential_law():
    """With fixed prompts ``X`` is one value, so ``P(TTFT <= t) = P(W <= t - x)``: the
    quantile is ``x`` plus the wait quantile (not the exact M/D/c law, which needs both
    token counts fixed)."""
    wl = spec.Workload(5.0, spec.TokenDist.fixed(800), spec.TokenDist.lognormal(
        math.log(200), 0.7))
    cl = spec.MonolithicCluster(4, 8000.0, 1000.0)
    est = analytic.estimate(wl, cl, wait_law="exponential")
    x = 800 / 8000.0 + 1 / 1000.0
    for q in (0.5, 0.9, 0.99):
        w_q = ref.exponential_wait_quantile(q, est.mean_wait_s["gpu"],
                                            est.delay_probability["gpu"])
        assert est.quantile(q) == pytest.approx(x + w_q, abs=2e-6), q


def test_summary_and_dataset_carry_the_same_numbers_with_units():
    cl = spec.DisaggregatedCluster(2, 3, 9000.0, 1500.0, 3e-5)
    est = analytic.estimate(WL, cl, method="whitt93")
    s = est.summary(quantiles=(0.5, 0.9))
    assert s["mode"] == "disagg" and s["method"] == "whitt93"
    assert s["mean_ttft_s"] == est.mean_ttft_s
    assert s["p50_ttft_s"] == est.p50_ttft_s and s["p90_ttft_s"] == est.quantile(0.9)
    for pool in ("prefill", "decode"):
        assert s[f"mean_wait_{pool}_s"] == est.mean_wait_s[pool]
        assert s[f"delay_probability_{pool}"] == est.delay_probability[pool]
        assert s[f"utilisation_{pool}"] == est.utilisation[pool]
    assert s["decode_arrival_scv"] == est.decode_arrival_scv
    assert (s["mean_prefill_s"], s["mean_transfer_s"], s["first_token_s"]) == (
        est.mean_prefill_s, est.mean_transfer_s, est.first_token_s)
    assert s["stable"] is True
    assert "p99_ttft_s" not in s

    grid = analytic.estimate(WL, cl, method="whitt93", arrival_rate_per_s=[2.0, 3.0])
    ds = grid.to_xarray(quantiles=(0.9,))
    assert ds.attrs == {"mode": "disagg", "method": "whitt93", "wait_law": "residual",
                        "linking": "timescale"}
    assert set(ds.data_vars) == {
        "mean_ttft_s", "p90_ttft_s", "stable", "mean_wait_prefill_s", "mean_wait_decode_s",
        "delay_probability_prefill", "delay_probability_decode", "utilisation_prefill",
        "utilisation_decode"}
    units = {"mean_ttft_s": ("s", "mean TTFT"), "p90_ttft_s": ("s", "P90 TTFT"),
             "mean_wait_decode_s": ("s", "mean wait for a decode GPU"),
             "delay_probability_prefill": ("1", "P(wait > 0) at prefill"),
             "utilisation_decode": ("1", "decode utilisation"),
             "stable": ("1", "offered load < 1 in every pool")}
    for name, (unit, long_name) in units.items():
        assert (ds[name].attrs["units"], ds[name].attrs["long_name"]) == (unit, long_name)
    np.testing.assert_array_equal(ds["mean_ttft_s"].values, grid.mean_ttft_s)
    np.testing.assert_array_equal(ds["p90_ttft_s"].values, grid.quantile(0.9))
    np.testing.assert_array_equal(ds["utilisation_prefill"].values,
                                  grid.utilisation["prefill"])
    np.testing.assert_array_equal(ds["delay_probability_decode"].values,
                                  grid.delay_probability["decode"])
    np.testing.assert_array_equal(ds["mean_wait_prefill_s"].values, grid.mean_wait_s["prefill"])
    assert ds["stable"].values.tolist() == [True, True]


# ------------------------------------------------------------------ exact M/D/c, bounded
def test_too_large_chain_message_is_consistent():
    """The refusal states the chain's size; its GiB figure is states x transitions x 8
    bytes, so a wrong count or unit in the message is caught."""
    import re

    from analytic.mdc import MAX_CHAIN_ENTRIES, MDcTooLarge, mdc_wait

    with pytest.raises(MDcTooLarge) as err:
        mdc_wait(0.999999 * 4 / 0.5, 0.5, 4)
    m = re.fullmatch(r"exact M/D/4 at rho = 0\.999999: its chain needs ([\d,]+) states x "
                     r"(\d+) transitions \(([\d.e+]+) GiB an array\); bounded at "
                     r"10,000,000 entries", str(err.value))
    assert m, str(err.value)
    states, transitions = int(m[1].replace(",", "")), int(m[2])
    assert states * transitions > MAX_CHAIN_ENTRIES
    assert m[3] == f"{states * transitions * 8 / 2**30:.2g}"
    # Poisson(lam D = 4) arrivals a step, truncated where the mass beyond is < 1e-17
    from scipy import stats
    assert stats.poisson.sf(transitions - 1, 4.0) < 1e-17 < stats.poisson.sf(20, 4.0)


def test_ttft_quantile_past_the_bound_is_the_wait_law_and_says_so():
    """Fixed tokens (M/D/c): exact law where the chain fits; at rho = 1 - 1e-6 the chain
    is too large, and the quantile is ``x`` plus the wait law's quantile, with a warning
    naming the point and the law (service 0.5 s, so rho is lam D / c, not lam/D/c). So
    close to saturation both laws are the atom-plus-exponential (the residual law's
    heavy-traffic limit, tabulated: within 1e-4)."""
    from analytic.mdc import ExactFallbackWarning

    wl = spec.Workload(1.0, spec.TokenDist.fixed(500), spec.TokenDist.fixed(50))
    cl = spec.MonolithicCluster(4, 2000.0, 200.0)  # 0.25 s + 0.25 s a request
    rate = np.array([4.0, 0.999999 * 8.0])
    x = 500 / 2000.0 + 1 / 200.0
    law = analytic.mdc_wait(4.0, 0.5, 4)
    for wait_law, rel in (("residual", 1e-4), ("gamma", 1e-6)):
        with pytest.warns(ExactFallbackWarning) as caught:
            est = analytic.estimate(wl, cl, arrival_rate_per_s=rate, wait_law=wait_law)
            p90 = est.quantile(0.9)
        said = [str(c.message) for c in caught]
        assert ("P(W > 0): the exact M/D/c chain is too large at 1 point(s) (M/D/4 at "
                "rho = 0.999999); Erlang C's delay probability used there instead") in said
        assert ("TTFT quantile: the exact M/D/c chain is too large at 1 point(s) (M/D/4 at "
                f"rho = 0.999999); the {wait_law} wait law used there instead") in said, said
        assert p90[0] == pytest.approx(x + law.quantile(0.9), rel=1e-9)
        w, p = est.mean_wait_s["gpu"][1], est.delay_probability["gpu"][1]
        assert p90[1] == pytest.approx(x + ref.exponential_wait_quantile(0.9, w, p), rel=rel)


@pytest.mark.parametrize("cluster", [
    spec.MonolithicCluster(4, 9000.0, 1500.0),
    spec.DisaggregatedCluster(2, 3, 9000.0, 1500.0, 3e-5),
    spec.DisaggregatedCluster(1, 1, 4000.0, 800.0)])
def test_zero_load_ttft_is_the_mean_service_to_the_first_token(cluster):
    """``E[P] (1 / r_p + kappa) + 1 / r_d``, and the estimate's mean TTFT tends to it as
    the rate vanishes."""
    ep = ref.pmf_moments(WL.prompt_tokens)[0]
    kappa = getattr(cluster, "kv_transfer_s_per_token", 0.0)
    expected = ep * (1 / cluster.prefill_tokens_per_s + kappa) + 1 / cluster.decode_tokens_per_s
    got = analytic.zero_load_ttft_s(WL, cluster)
    assert got == pytest.approx(expected, rel=1e-9)
    idle = analytic.estimate(WL.with_rate(1e-9), cluster).mean_ttft_s
    assert idle == pytest.approx(expected, rel=1e-6)
