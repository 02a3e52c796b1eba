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
