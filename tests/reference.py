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
