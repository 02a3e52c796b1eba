"""sympy forms cross-check the numeric code (lambdify), and print as LaTeX."""


import pytest
import sympy as sp

import analytic
from analytic import symbolic
from spec import TokenDist


@pytest.mark.parametrize("c", [1, 2, 5, 9])
def test_erlang_c_expression_matches_numeric(c):
    f = sp.lambdify(symbolic.a, symbolic.erlang_c(c))
    for rho in (0.1, 0.5, 0.93):
        assert f(rho * c) == pytest.approx(analytic.erlang_c(c, rho * c), rel=1e-12)


def test_pk_matches_numeric():
    f = sp.lambdify((symbolic.lam, symbolic.ES, symbolic.ES2), symbolic.pollaczek_khinchine())
    lam, es, cs2 = 0.6, 1.2, 0.7
    assert f(lam, es, es**2 * (1 + cs2)) == pytest.approx(analytic.pk_wait(lam, es, cs2),
                                                          rel=1e-12)


def test_mm1_ttft_is_wait_plus_service():
    f = sp.lambdify((symbolic.lam, symbolic.mu), symbolic.mm1_ttft())
    assert f(0.7, 1.0) == pytest.approx(analytic.mmc_wait(0.7, 1.0, 1) + 1.0, rel=1e-12)


def test_tensor_parallel_reduces_to_md1_at_k1():
    diff = symbolic.md1_ttft_tensor_parallel().subs(symbolic.K, 1) - symbolic.md1_ttft()
    assert sp.simplify(diff) == 0


def test_lognormal_conversions_match_spec():
    mu_e, sigma_e = symbolic.lognormal_from_mean_std()
    d = TokenDist("real_mean_std", mean=900.0, std=350.0)
    vals = {symbolic.m: 900.0, symbolic.s: 350.0}
    assert float(mu_e.subs(vals)) == pytest.approx(d.mu, rel=1e-13)
    assert float(sigma_e.subs(vals)) == pytest.approx(d.sigma_log, rel=1e-13)
    mu_e, sigma_e = symbolic.lognormal_from_p50_p90()
    d = TokenDist("p50_p90", p50=300.0, p90=1100.0)
    vals = {symbolic.p50: 300.0, symbolic.p90: 1100.0, symbolic.z: 1.2815515655446004}
    assert float(mu_e.subs(vals)) == pytest.approx(d.mu, rel=1e-13)
    assert float(sigma_e.subs(vals)) == pytest.approx(d.sigma_log, rel=1e-13)


def test_kimura_and_qna_forms_match_numeric():
    f = sp.lambdify(list(symbolic.kimura().free_symbols), symbolic.kimura())
    names = {str(s): s for s in symbolic.kimura().free_symbols}
    lam, c, cs2 = 3.0, 4, 0.6
    w_mm = analytic.mmc_wait(lam, 1.0, c)
    w_md = analytic.cosmetatos_mdc_wait(lam, 1.0, c)
    args = {"W_MMc": w_mm, "W_MDc": w_md, "c_s^2": cs2}
    got = f(*(args[str(s)] for s in symbolic.kimura().free_symbols))
    assert got == pytest.approx(analytic.kimura_wait(lam, 1.0, cs2, c), rel=1e-12)
    assert set(names) == set(args)
    e = symbolic.qna_departure_scv()
    val = float(e.subs({symbolic.rho: 0.75, sp.Symbol("c_a^2", positive=True): 1.3,
                        symbolic.cs2: 2.0, sp.Symbol("c", positive=True): 4}))
    assert val == pytest.approx(analytic.departure_scv(3.0, 1.0, 2.0, 4, 1.3), rel=1e-12)


@pytest.mark.parametrize("name", list(symbolic.FORMULAS))
def test_latex_strings(name):
    """Every formula's LaTeX has balanced braces and is drawn by matplotlib's mathtext
    (the renderer of the reports and docs); a symbol whose name holds '^2' is not split
    into a broken superscript (E[S^{2]} was printed before)."""
    from matplotlib.mathtext import MathTextParser

    text = symbolic.latex(name)
    lhs, _, rhs = text.partition(" = ")
    assert lhs and rhs
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, text
    assert depth == 0, text
    assert "^{2]" not in text
    MathTextParser("path").parse(f"${text}$")
    with pytest.raises(ValueError, match="must be one of"):
        symbolic.latex("nope")


def test_pollaczek_khinchine_latex_reads_as_written():
    assert symbolic.latex("pk") == r"E[W] = \frac{E[S^2] \lambda}{- 2 E[S] \lambda + 2}"


def _by_name(expr: sp.Expr, **values: float) -> float:
    """Evaluate by the symbols' printed names, which must be exactly these."""
    names = {str(s): s for s in expr.free_symbols}
    assert set(names) == set(values), (set(names), set(values))
    return float(expr.subs({names[k]: v for k, v in values.items()}))


def test_every_printed_formula_is_its_exact_result():
    """Each formula of the reports, at numbers, against the tests' own references: the
    M/M/c form (C E[S] / (c (1 - rho))), M/D/1 (P-K with E[S^2] = D^2), and DistServe's
    tensor-parallel form, which is M/D/1 with service D / K."""
    from tests import reference as ref

    es, c, lam_ = 0.8, 3, 3.0
    C = ref.erlang_c(c, lam_ * es)
    w = _by_name(symbolic.mmc_wait_from_erlang_c(), C=C, **{"E[S]": es}, c=c,
                 rho=lam_ * es / c)
    assert w == pytest.approx(ref.mmc_mean_wait(lam_, es, c), rel=1e-12)
    assert _by_name(symbolic.md1_ttft(), D=0.5, **{"lambda": 1.2}) == pytest.approx(
        0.5 + ref.md1_mean_wait(1.2, 0.5), rel=1e-12)
    for k in (1.0, 1.7, 2.0):
        got = _by_name(symbolic.md1_ttft_tensor_parallel(), D=0.5, K=k, **{"lambda": 2.5})
        assert got == pytest.approx(0.5 / k + ref.md1_mean_wait(2.5, 0.5 / k), rel=1e-12), k
    assert _by_name(symbolic.mm1_ttft(), mu=2.0, **{"lambda": 1.5}) == pytest.approx(
        ref.mmc_mean_wait(1.5, 0.5, 1) + 0.5, rel=1e-12)
    assert _by_name(symbolic.qna_departure_scv(), rho=0.6, c=4, **{"c_a^2": 1.4,
                    "c_s^2": 0.3}) == pytest.approx(ref.qna_departure_scv(2.4, 1.0, 0.3, 4, 1.4))
    assert symbolic.latex("mmc") == r"E[W] = \frac{C E[S]}{c \left(1 - \rho\right)}"


# ------------------------------------------------------------------ batched serving
def test_the_chains_per_batch_terms_are_the_riders_moments_derived_symbolically():
    """One batch of ``x`` prompts (the batch law a point mass, no idle batches): the
    numeric mean and second moment of TTFT are E[sum_r T_r^k | S] / E[m | S] averaged
    over ``S = a + beta_1 + ... + beta_x``, whose moments the test takes from the
    cumulants (mean, ``x Var beta``, ``x mu_3``); sympy derived them from the riders'
    uniform arrivals and Poisson count (analytic.symbolic.rider_moments)."""
    import numpy as np

    from analytic.batched import batch_prefill_ttft_moment2

    lam_, a_, e1, var, mu3, x = 6.0, 0.02, 0.03, 4e-4, 5e-6, 3
    s1 = a_ + x * e1
    s_moment = {1: s1, 2: s1**2 + x * var, 3: s1**3 + 3 * s1 * x * var + x * mu3}

    def averaged(expr: sp.Expr) -> float:
        names = {str(v): v for v in expr.free_symbols}
        poly = sp.Poly(sp.expand(expr.subs({names["lambda"]: lam_, names["a"]: a_,
                                            names["E[beta]"]: e1,
                                            names.get("Var_beta", sp.Dummy()): var})),
                       names["S"])
        return float(sum(float(c) * s_moment[j] for (j,), c in poly.terms()))

    riders = lam_ * s1  # E[m] = lam E[S]
    law = np.zeros(x)
    law[-1] = 1.0
    m2 = batch_prefill_ttft_moment2(lam_, a_, e1, var, mu3, law, 0.0)  # laplace 0: no idle
    assert m2 == pytest.approx(averaged(symbolic.rider_moments(2)) / riders, rel=1e-12)
    # the mean's numerator in the chain, lam E[S^2]/2 + a lam E[S] + e1 (lam E[S] +
    # lam^2 E[S^2]), is the symbolic first moment
    num = lam_ * s_moment[2] / 2 + a_ * lam_ * s1 + e1 * (lam_ * s1 + lam_**2 * s_moment[2])
    assert num == pytest.approx(averaged(symbolic.rider_moments(1)), rel=1e-12)
    with pytest.raises(ValueError, match="k = 3: must be 1 or 2"):
        symbolic.rider_moments(3)


def test_batched_closed_forms_match_their_numeric_code():
    from analytic.batched import batch_prefill_ttft
    from analytic.batched_disagg import batch_variance

    for lam_, a_, e1, e2 in ((2.0, 0.02, 0.05, 0.004), (15.0, 0.0, 0.06, 0.0045)):
        got = _by_name(symbolic.batch_prefill_heavy_traffic(), a=a_, **{
            "lambda": lam_, "E[beta]": e1, "E[beta^2]": e2})
        assert got == pytest.approx(float(batch_prefill_ttft(lam_, a_, e1, e2)), rel=1e-12)
    import numpy as np

    a_, k = 0.02, 0.0005  # an affine step a + k B: tau' = k
    table = np.concatenate(([0.0], a_ + k * np.arange(1, 4097)))
    for m_ in (3.0, 40.0):
        got = _by_name(symbolic.decode_batch_variance(), m=m_, tau=a_ + k * m_,
                       **{"tau'": k})
        assert got == pytest.approx(batch_variance(m_, table), rel=1e-12)
    # the decode pool's flow balance on the seed's rates profile is processor sharing
    from analytic.batched_disagg import decode_load, decode_pool, decode_step_table
    from spec import Profile

    r_d, prompt = 400.0, TokenDist.lognormal(6.0, 0.7, 1)
    output = TokenDist.lognormal(5.0, 0.8, 1)
    load = decode_load(prompt, output, "decode")
    table = decode_step_table(Profile.rates(5000.0, r_d), load.context_mean, 2048)
    rho_ = 1.2 * output.raw_moment(1) / r_d
    assert _by_name(symbolic.processor_sharing_tpot(), r=r_d, rho=rho_) == \
        pytest.approx(decode_pool(1.2, load, table).tpot_s, rel=1e-9)
    assert symbolic.latex("batch_prefill").startswith(r"E[\mathrm{TTFT}] = E[\beta] + a")
    assert symbolic.latex("decode_variance") == (
        r"\mathrm{Var}\,N = \frac{m \tau}{- m \tau' + \tau}")
