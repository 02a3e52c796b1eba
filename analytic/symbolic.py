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


def latex(name: str) -> str:
    """``lhs = rhs`` in LaTeX for one of :data:`FORMULAS`."""
    if name not in FORMULAS:
        raise ValueError(f"name = {name!r}: must be one of {', '.join(FORMULAS)}")
    _, lhs, expr = FORMULAS[name]
    # sympy would read the '^2' inside a symbol's name as a superscript: E[S^{2]}
    names = {ES: "E[S]", ES2: "E[S^2]", cs2: "c_s^2"}
    return f"{lhs} = {sp.latex(expr, symbol_names=names)}"
