"""Exact textbook results, written here independently of ``analytic`` (the tests' own
witness), and the replication confidence interval the statistical tests use."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def erlang_c(servers: int, offered_load: float) -> float:
    """Erlang C from the textbook sum (fine for the small ``c`` used in tests).

    ``C = (a^c / c!) / (1 - rho) / (sum_{k<c} a^k / k! + (a^c / c!) / (1 - rho))``.
    """
    a, c = offered_load, servers
    rho = a / c
    top = a**c / math.factorial(c) / (1.0 - rho)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def mmc_mean_wait(rate: float, mean_service: float, servers: int) -> float:
    """``E[W] = C(c, a) E[S] / (c (1 - rho))`` for M/M/c."""
    a = rate * mean_service
    return erlang_c(servers, a) * mean_service / (servers * (1.0 - a / servers))


def md1_mean_wait(rate: float, service: float) -> float:
    """Pollaczek-Khinchine for M/D/1: ``E[W] = lam D^2 / (2 (1 - lam D))``."""
    return rate * service**2 / (2.0 * (1.0 - rate * service))


def t_interval(samples, confidence: float) -> tuple[float, float]:
    """Student-t interval for the mean of independent replications."""
    x = np.asarray(samples, dtype=float)
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def chain_mean_ttft(lam: float, a: float, beta: float, states: int = 600) -> float:
    """Mean TTFT of a prefill instance that batches everything waiting (fixed cost
    ``beta`` a request, intercept ``a``, Poisson ``lam``): the embedded chain on batch
    sizes, truncated at ``states`` (ANALYTIC_NOTES, batched item 1; formula in
    tests/test_batched_chain.py)."""
    x = np.arange(1, states + 1)
    s = a + x * beta
    m = lam * s
    # P[x -> y] = Poisson(m_x)(y) for y >= 1, plus e^{-m_x} to y = 1
    P = stats.poisson.pmf(x[None, :], m[:, None])
    P[:, 0] += np.exp(-m)
    P /= P.sum(axis=1, keepdims=True)  # the truncated tail (< 1e-12 here) back in
    w, v = np.linalg.eig(P.T)
    pi = np.real(v[:, np.argmin(np.abs(w - 1))])
    pi /= pi.sum()
    num = pi @ (m * (s / 2 + a + beta * (1 + m)) + np.exp(-m) * (a + beta))
    den = pi @ (m + np.exp(-m))
    return float(num / den)


# --------------------------------------------------------------------------------------
# Two-moment approximations, transcribed one scalar at a time from their papers (not from
# analytic/): the tests check the vectorised code against these at every branch.
def cosmetatos_g(rho: float, c: int) -> float:
    """Cosmetatos (1975): ``g = (1 - rho)(c - 1)(sqrt(4 + 5c) - 2) / (16 rho c)``."""
    return (1.0 - rho) * (c - 1) * (math.sqrt(4.0 + 5.0 * c) - 2.0) / (16.0 * rho * c)


def mdc_wait_cosmetatos(rate: float, service: float, servers: int) -> float:
    """Cosmetatos's M/D/c wait, ``1/2 E[W_MMc] (1 + g)``, with ``g`` capped at 1 (the
    toolkit's stated choice: above 1 the formula would exceed M/M/c)."""
    rho = rate * service / servers
    return 0.5 * mmc_mean_wait(rate, service, servers) * (1.0 + min(cosmetatos_g(rho, servers),
                                                                    1.0))


def gi_factor(cs2: float, ca2: float) -> float:
    """The GI extension of an M/G/c formula, ``(ca2 + cs2) / (1 + cs2)``."""
    return (ca2 + cs2) / (1.0 + cs2)


def pk_mean_wait(rate: float, mean_service: float, cs2: float) -> float:
    """Pollaczek-Khinchine: ``E[W] = rho E[S] (1 + cs2) / (2 (1 - rho))``."""
    rho = rate * mean_service
    return rho * mean_service * (1.0 + cs2) / (2.0 * (1.0 - rho))


def whitt93_mean_wait(rate: float, mean_service: float, cs2: float, servers: int,
                      ca2: float) -> float:
    """Whitt, "Approximations for the GI/G/m queue" (1993), eqs. 2.16-2.25, as printed."""
    rho = rate * mean_service / servers
    gamma = min(0.24, cosmetatos_g(rho, servers))
    phi1 = 1.0 + gamma
    phi3 = (1.0 - 4.0 * gamma) * math.exp(-2.0 * (1.0 - rho) / (3.0 * rho))
    phi4 = min(1.0, (phi1 + phi3) / 2.0)
    cbar = (ca2 + cs2) / 2.0
    psi = 1.0 if cbar >= 1.0 else phi4 ** (2.0 * (1.0 - cbar))
    if ca2 >= cs2:
        phi = (4.0 * (ca2 - cs2) / (4.0 * ca2 - 3.0 * cs2) * phi1
               + cs2 / (4.0 * ca2 - 3.0 * cs2) * psi)
    else:
        phi = ((cs2 - ca2) / (2.0 * (ca2 + cs2)) * phi3
               + (cs2 + 3.0 * ca2) / (2.0 * (ca2 + cs2)) * psi)
    return phi * cbar * mmc_mean_wait(rate, mean_service, servers)


def two_moment_mean_wait(method: str, rate: float, mean_service: float, cs2: float,
                         servers: int, ca2: float = 1.0) -> float:
    """The registry's mean waits by name, with the stated M/G/1 rule (P-K, exact, for one
    server and Poisson input, whatever the method)."""
    if servers == 1 and ca2 == 1.0:
        return pk_mean_wait(rate, mean_service, cs2)
    w_mm = mmc_mean_wait(rate, mean_service, servers)
    w_md = mdc_wait_cosmetatos(rate, mean_service, servers)
    if method == "mmc":
        return (ca2 + 1.0) / 2.0 * w_mm
    if method == "allen_cunneen":
        return (ca2 + cs2) / 2.0 * w_mm
    if method == "cosmetatos":  # Cosmetatos (1976): linear in cs2 between M/D/c and M/M/c
        return gi_factor(cs2, ca2) * (cs2 * w_mm + (1.0 - cs2) * w_md)
    if method == "whitt93":
        return whitt93_mean_wait(rate, mean_service, cs2, servers, ca2)
    if method == "kimura":  # Kimura (1994): harmonic interpolation in the system
        w = w_md if cs2 == 0.0 else (1.0 + cs2) / (2.0 * cs2 / w_mm + (1.0 - cs2) / w_md)
        return gi_factor(cs2, ca2) * w
    raise KeyError(method)


def qna_departure_scv(rate: float, mean_service: float, cs2: float, servers: int,
                      ca2: float) -> float:
    """Whitt's QNA (1983), eq. 39: ``1 + (1 - rho^2)(ca2 - 1) + rho^2 (cs2 - 1)/sqrt(c)``."""
    rho = rate * mean_service / servers
    return 1.0 + (1.0 - rho**2) * (ca2 - 1.0) + rho**2 * (cs2 - 1.0) / math.sqrt(servers)


def exponential_wait_quantile(q: float, mean_wait: float, delay_prob: float) -> float:
    """Quantile of ``W`` = 0 with probability ``1 - p``, else exponential of mean
    ``E[W] / p`` (Tijms): 0 for ``q <= 1 - p``, else ``E[W]/p ln(p / (1 - q))``."""
    if q <= 1.0 - delay_prob:
        return 0.0
    return mean_wait / delay_prob * math.log(delay_prob / (1.0 - q))


def mdc_queue_law(rate: float, service: float, servers: int, states: int = 400) -> np.ndarray:
    """Stationary law of the number in an M/D/c system seen every ``D`` (Crommelin):
    ``Q' = max(Q - c, 0) + Poisson(lam D)``, by power iteration from empty."""
    arrivals = stats.poisson.pmf(np.arange(states), rate * service)
    pi = np.zeros(states)
    pi[0] = 1.0
    for _ in range(20_000):
        left = np.zeros(states)  # max(Q - c, 0)
        left[0] = pi[: servers + 1].sum()
        left[1: states - servers] = pi[servers + 1:]
        new = np.convolve(left, arrivals)[:states]
        new /= new.sum()
        if np.abs(new - pi).max() < 1e-15:
            return new
        pi = new
    raise AssertionError(f"M/D/{servers} chain not converged in 20,000 steps")


def mdc_delay_probability(rate: float, service: float, servers: int) -> float:
    """``P(W > 0)`` of M/D/c (Franx 2001 at ``t = 0``): an arrival waits unless
    ``(Q - c)^+ + Poisson(lam D) <= c - 1``; that sum is the chain's next state, so at
    stationarity its law is the chain's own: ``1 - P(Q <= c - 1)``."""
    return float(1.0 - mdc_queue_law(rate, service, servers)[:servers].sum())


def pmf_moments(dist) -> tuple[float, float]:
    """Mean and variance of a token law from its pmf (spec's, not analytic's)."""
    v, p = dist.pmf()
    mean = float(np.sum(v * p))
    return mean, float(np.sum((v - mean) ** 2 * p))


def mdc_mean_wait(rate: float, service: float, servers: int) -> float:
    """Exact M/D/c mean wait, ``E[(Q - c)^+] / lam`` over Crommelin's chain (ANALYTIC_NOTES:
    the requests still queued at an epoch are the ones that wait)."""
    pi = mdc_queue_law(rate, service, servers)
    queued = np.maximum(np.arange(pi.size) - servers, 0)
    return float(pi @ queued / rate)


def relaxation_time(rate: float, mean_service: float, cs2: float, servers: int,
                    ca2: float) -> float:
    """Whitt (1989): ``rho (ca2 + cs2) E[S] / (c (1 - rho)^2)``."""
    rho = rate * mean_service / servers
    return rho * (ca2 + cs2) * mean_service / (servers * (1.0 - rho) ** 2)


def linked_arrival_scv(rate: float, es1: float, cs1: float, c1: int, es2: float,
                       cs2: float, c2: int) -> float:
    """Poisson input to station 1: ``1 + (cd2 - 1) sqrt(tau1 / (tau1 + tau2))``, ``tau2``
    at arrival SCV ``cd2``."""
    cd2 = qna_departure_scv(rate, es1, cs1, c1, 1.0)
    tau1 = relaxation_time(rate, es1, cs1, c1, 1.0)
    tau2 = relaxation_time(rate, es2, cs2, c2, cd2)
    return 1.0 + (cd2 - 1.0) * math.sqrt(tau1 / (tau1 + tau2))


def conditional_wait_scv(rho: float, kappa: float, servers: int) -> float:
    """``min(1 + (s1 - 1)/sqrt(c), 1.5)``, ``s1 = 2 rho - 1 + (1 - rho) 4 kappa / 3``."""
    s1 = 2.0 * rho - 1.0 + (1.0 - rho) * 4.0 * kappa / 3.0
    return min(1.0 + (s1 - 1.0) / math.sqrt(servers), 1.5)


def gamma_wait_quantile(q: float, mean_wait: float, delay_prob: float, scv: float) -> float:
    """Quantile of ``W`` = 0 with probability ``1 - p``, else gamma of mean ``E[W] / p``
    and squared coefficient of variation ``scv`` (scipy.stats.gamma)."""
    from scipy import stats

    if q <= 1.0 - delay_prob:
        return 0.0
    m = mean_wait / delay_prob
    return float(stats.gamma(1.0 / scv, scale=m * scv).isf((1.0 - q) / delay_prob))


def skew_of_sum(laws_and_rates) -> float:
    """``E[S^3] E[S] / E[S^2]^2`` of ``S = sum N_i / r_i`` from the exact pmf of ``S``,
    built by convolving the token pmfs (independent counts) on the integer lattice of
    ``S / unit``, ``unit = 1 / lcm`` of the whole-number rates."""
    rates = [int(r) for _, r in laws_and_rates]
    assert all(r == rr for r, (_, rr) in zip(rates, laws_and_rates, strict=True))
    lcm = math.lcm(*rates)
    pmf = np.array([1.0])
    for dist, r in laws_and_rates:
        v, p = dist.pmf()
        step = np.zeros(int(v[-1]) * (lcm // int(r)) + 1)
        step[v * (lcm // int(r))] = p
        pmf = np.convolve(pmf, step) if pmf.size > 1 else step
    pmf = pmf / pmf.sum()
    support = np.arange(pmf.size) / lcm
    m1, m2, m3 = (float(np.sum(pmf * support**k)) for k in (1, 2, 3))
    return m3 * m1 / m2**2
