"""Symbolic forms (sympy) of the exact results, for cross-checks and for the reports.

Each function returns a sympy expression; :data:`FORMULAS` collects the ones the reports
print (as LaTeX via :func:`latex`) and the tests ``lambdify`` against the numeric code.
"""

from __future__ import annotations

import sympy as sp

lam, mu, D, K = sp.symbols("lambda mu D K", positive=True)
a, rho = sp.symbols("a rho", positive=True)
ES, ES2, cs2 = sp.symbols("E[S] E[S^2] c_s^2", positive=True)
m, s, p50, p90, z = sp.symbols("m s p_50 p_90 z_0.9", positive=True)


def erlang_c(c: int) -> sp.Expr:
    r"""Erlang C for ``c`` servers as a function of the offered load ``a``:
    :math:`C = \frac{\frac{a^c}{c!}\frac{c}{c-a}}{\sum_{k<c}\frac{a^k}{k!} +
    \frac{a^c}{c!}\frac{c}{c-a}}`."""
    top = a**c / sp.factorial(c) * c / (c - a)
    return sp.simplify(top / (sum(a**k / sp.factorial(k) for k in range(c)) + top))


def pollaczek_khinchine() -> sp.Expr:
    r"""M/G/1 mean wait :math:`\lambda E[S^2] / (2 (1 - \lambda E[S]))`."""
    return lam * ES2 / (2 * (1 - lam * ES))


def mm1_ttft() -> sp.Expr:
    r"""M/M/1 mean sojourn (TTFT of an exponential prefill, no decode):
    :math:`1/(\mu - \lambda)`."""
    return 1 / (mu - lam)


def md1_ttft() -> sp.Expr:
    r"""DistServe's M/D/1 prefill TTFT: :math:`D + \lambda D^2 / (2(1 - \lambda D))`."""
    return D + lam * D**2 / (2 * (1 - lam * D))


def md1_ttft_tensor_parallel() -> sp.Expr:
    r"""DistServe's M/D/1 with K-way tensor parallelism of speed-up K:
    :math:`D/K + \lambda D^2 / (2K (K - \lambda D))`."""
    return D / K + lam * D**2 / (2 * K * (K - lam * D))


def lognormal_from_mean_std() -> tuple[sp.Expr, sp.Expr]:
    r"""``(mu, sigma)`` of ``log X`` from the mean ``m`` and standard deviation ``s``:
    :math:`\sigma^2 = \ln(1 + s^2/m^2)`, :math:`\mu = \ln m - \sigma^2/2`."""
    sigma = sp.sqrt(sp.log(1 + s**2 / m**2))
    return sp.log(m) - sigma**2 / 2, sigma


def lognormal_from_p50_p90() -> tuple[sp.Expr, sp.Expr]:
    r"""``(mu, sigma)`` from the median and 90th percentile:
    :math:`\mu = \ln p_{50}`, :math:`\sigma = (\ln p_{90} - \ln p_{50}) / z_{0.9}`."""
    return sp.log(p50), (sp.log(p90) - sp.log(p50)) / z


def mmc_wait_from_erlang_c() -> sp.Expr:
    r"""M/M/c mean wait given C: :math:`C\,E[S] / (c (1 - \rho))`."""
    C, c = sp.symbols("C c", positive=True)
    return C * ES / (c * (1 - rho))


def kimura() -> sp.Expr:
    r"""Kimura's interpolation :math:`(1 + c_s^2) / (2c_s^2/W_{MMc} + (1-c_s^2)/W_{MDc})`."""
    w_mm, w_md = sp.symbols("W_MMc W_MDc", positive=True)
    return (1 + cs2) / (2 * cs2 / w_mm + (1 - cs2) / w_md)


def qna_departure_scv() -> sp.Expr:
    r"""Whitt's QNA departure variability
    :math:`1 + (1-\rho^2)(c_a^2 - 1) + \rho^2 (c_s^2 - 1)/\sqrt{c}`."""
    ca2, c = sp.symbols("c_a^2 c", positive=True)
    return 1 + (1 - rho**2) * (ca2 - 1) + rho**2 * (cs2 - 1) / sp.sqrt(c)


# ------------------------------------------------------------------ batched serving
Eb, Eb2, Varb = sp.symbols("E[beta] E[beta^2] Var_beta", positive=True)
S = sp.symbols("S", positive=True)
tau, dtau = sp.symbols("tau tau'", positive=True)


def batch_prefill_heavy_traffic() -> sp.Expr:
    r"""Mean TTFT of a prefill instance that batches everything waiting (ANALYTIC_NOTES
    batched item 1; :func:`analytic.batched.batch_prefill_ttft`):
    :math:`a + E[\beta] + (\tfrac12 + \rho)(\frac{a}{1-\rho} +
    \frac{\lambda E[\beta^2]}{1-\rho^2})`, :math:`\rho = \lambda E[\beta]`."""
    r = lam * Eb
    return a + Eb + (sp.Rational(1, 2) + r) * (a / (1 - r) + lam * Eb2 / (1 - r**2))


def rider_moments(k: int) -> sp.Expr:
    r"""``E[sum_r T_r^k | S]`` (``k = 1, 2``) over the riders of a batch of time ``S`` of
    a batch-everything prefill instance, derived here from first principles: ``m ~
    Poisson(lam S)`` riders, each arriving uniformly in the batch (its rest of the batch
    ``R = S - U``), then the next batch ``N = a + beta_1 + ... + beta_m``, independent of
    ``R`` given ``m``; ``E[N | m] = a + m E[beta]``, ``Var(N | m) = m Var beta``. The
    numeric chain (:func:`analytic.batched.batch_prefill_ttft_moment2` and the mean of
    :func:`analytic.batched.batch_prefill_random_ttft`) must equal it term by term."""
    if k not in (1, 2):
        raise ValueError(f"k = {k!r}: must be 1 or 2")
    m_ = sp.symbols("m", integer=True, nonnegative=True)
    u = sp.symbols("u", positive=True)
    r_1 = sp.integrate(S - u, (u, 0, S)) / S  # E[R | S], R = S - U
    r_2 = sp.integrate((S - u) ** 2, (u, 0, S)) / S  # E[R^2 | S]
    n_1 = a + m_ * Eb  # E[N | m]
    n_2 = n_1**2 + m_ * Varb  # E[N^2 | m]
    per_rider = r_1 + n_1 if k == 1 else r_2 + 2 * r_1 * n_1 + n_2
    total = sp.Poly(sp.expand(m_ * per_rider), m_)  # the m riders alike given m
    t = sp.symbols("t")
    mgf = sp.exp(lam * S * (sp.exp(t) - 1))  # Poisson(lam S): E[m^j] = mgf^(j)(0)
    moment = [sp.diff(mgf, t, j).subs(t, 0) for j in range(total.degree() + 1)]
    return sp.factor(sum(c * moment[j] for (j,), c in total.terms()))


def decode_batch_variance() -> sp.Expr:
    r"""The decode batch's variance from the diffusion approximation
    (:func:`analytic.batched_disagg.batch_variance`): :math:`m\,\tau/(\tau - m\tau')`."""
    return m * tau / (tau - m * dtau)


def processor_sharing_tpot() -> sp.Expr:
    r"""TPOT of a decode instance whose step is ``B / r`` (the seed's rates profile):
    M/G/1 processor sharing, :math:`1/(r(1 - \rho))` with ``r`` tokens/s."""
    r_ = sp.symbols("r", positive=True)
    return 1 / (r_ * (1 - rho))


#: Formulas the reports print, by name: (title, left-hand side, expression).
FORMULAS: dict[str, tuple[str, str, sp.Expr]] = {
    "pk": ("Pollaczek-Khinchine (M/G/1, exact)", r"E[W]", pollaczek_khinchine()),
    "mmc": ("M/M/c mean wait (Erlang C, exact)", r"E[W]", mmc_wait_from_erlang_c()),
    "kimura": ("Kimura's M/G/c interpolation (default method)", r"E[W]", kimura()),
    "qna": ("QNA departure variability (tandem linking)", r"c_d^2", qna_departure_scv()),
    "md1": ("DistServe M/D/1 prefill TTFT", r"\mathrm{TTFT}", md1_ttft()),
    "md1_tp": ("DistServe M/D/1 with K-way tensor parallelism", r"\mathrm{TTFT}",
               md1_ttft_tensor_parallel()),
}


#: The batched model's closed forms the batched reports print, as :data:`FORMULAS`.
BATCHED_FORMULAS: dict[str, tuple[str, str, sp.Expr]] = {
    "batch_prefill": ("Batch-everything prefill instance, heavy-traffic closed form",
                      r"E[\mathrm{TTFT}]", batch_prefill_heavy_traffic()),
    "rider_second_moment": ("Second moment of TTFT over a batch's riders (given its time S)",
                            r"E[\sum_r T_r^2 \mid S]", rider_moments(2)),
    "decode_variance": ("Decode batch variance (diffusion approximation)",
                        r"\mathrm{Var}\,N", decode_batch_variance()),
    "ps_tpot": ("Decode TPOT at a rates profile (M/G/1 processor sharing, exact)",
                r"\mathrm{TPOT}", processor_sharing_tpot()),
}


def latex(name: str) -> str:
    """``lhs = rhs`` in LaTeX for one of :data:`FORMULAS` or :data:`BATCHED_FORMULAS`."""
    every = {**FORMULAS, **BATCHED_FORMULAS}
    if name not in every:
        raise ValueError(f"name = {name!r}: must be one of {', '.join(every)}")
    _, lhs, expr = every[name]
    # sympy would read the '^2' inside a symbol's name as a superscript: E[S^{2]}
    names = {ES: "E[S]", ES2: "E[S^2]", cs2: "c_s^2", Eb: r"E[\beta]", Eb2: r"E[\beta^2]",
             Varb: r"\mathrm{Var}\,\beta", tau: r"\tau", dtau: r"\tau'"}
    return f"{lhs} = {sp.latex(expr, symbol_names=names)}"
