"""The exact M/D/c waiting time (Crommelin 1932; Franx 2001).

Sampled every ``D``, the number in system ``Q`` is a Markov chain
``Q' = max(Q - c, 0) + A``, ``A ~ Poisson(lam D)``, whose stationary law is also the
time-stationary law of the number in system. With ``R = (Q - c)^+``:

* ``E[W] = E[R] / lam`` (Little's law on the queue);
* ``P(W <= k D + u) = P(R + Poisson(lam (D - u)) <= (k + 1) c - 1)`` for ``0 <= u < D``
  (Franx, "A simple solution for the M/D/c waiting time distribution", Oper. Res.
  Letters 29 (2001) 221-229).

The chain is solved truncated at ``N`` states as a banded linear system; ``N`` doubles until the
top states hold less than ``1e-14`` of the mass. ``N`` grows like ``1 / (1 - rho)``: the work is
bounded (:data:`MAX_CHAIN_ENTRIES`), past it :class:`MDcTooLarge` is raised and the vectorised
helpers fall back to Cosmetatos's approximation, with an :class:`ExactFallbackWarning` naming
the points.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats as sps
from scipy.linalg import solve_banded
from scipy.optimize import brentq

_TAIL_MASS = 1e-14
#: Most transition entries ``N (kmax + 1)`` one chain may hold: about 80 MB per array of
#: them, a few arrays at once: the exact law holds to rho = 0.999 for c = 1 to 64 (0.9995
#: for c = 1 to 4, not 0.9999).
MAX_CHAIN_ENTRIES = 10_000_000


class MDcTooLarge(ValueError):
    """The exact M/D/c chain at this point would exceed :data:`MAX_CHAIN_ENTRIES`;
    ``point`` names it (``M/D/4 at rho = 0.999999``) for the fallback warnings."""

    def __init__(self, message: str, point: str) -> None:
        super().__init__(message)
        self.point = point


class ExactFallbackWarning(UserWarning):
    """An exact M/D/c result was replaced by an approximation at some points."""


def _kmax(m: float) -> int:
    return int(m + 12.0 * np.sqrt(m) + 40.0)  # Poisson mass beyond: < 1e-17


def point_name(servers: float, rho: float) -> str:
    """How warnings and errors name one M/D/c point: ``M/D/4 at rho = 0.999999``."""
    return f"M/D/{int(servers)} at rho = {rho:.9g}"


def _check_size(m: float, c: int, n: int) -> None:
    entries = n * (_kmax(m) + 1)
    if entries > MAX_CHAIN_ENTRIES:
        point = point_name(c, m / c)
        raise MDcTooLarge(
            f"exact {point}: its chain needs {n:,} states x {_kmax(m) + 1} transitions "
            f"({entries * 8 / 2**30:.2g} GiB an array); bounded at {MAX_CHAIN_ENTRIES:,} "
            "entries", point)


def _stationary(m: float, c: int, n: int) -> np.ndarray:
    """Stationary law of the chain truncated at ``n`` states (overflow lumped at n - 1).

    Solves ``pi (I - P) = 0`` as a banded system (LAPACK gbsv): ``P`` moves state ``i``
    to ``max(i - c, 0) + [0, kmax]``, so ``(I - P)^T`` has lower bandwidth ``kmax`` and
    upper bandwidth ``c``. One state near the mode, ``k``, is pinned to ``pi_k = 1``
    (its equation dropped), which keeps the band and avoids underflow of ``pi_0``.
    """
    kmax = _kmax(m)
    a = sps.poisson.pmf(np.arange(kmax + 1), m)
    i = np.repeat(np.arange(n), kmax + 1)
    j = np.minimum(np.maximum(np.arange(n) - c, 0)[:, None] + np.arange(kmax + 1)[None, :],
                   n - 1).ravel()
    # A = (I - P)^T: A[j, i] -= P[i, j]; A[i, i] += 1 (duplicates add up: lumping)
    rows = np.concatenate([j, np.arange(n)])
    cols = np.concatenate([i, np.arange(n)])
    vals = np.concatenate([-np.broadcast_to(a, (n, kmax + 1)).ravel(), np.ones(n)])
    k = min(int(m), n - 1)
    keep = (rows != k) & (cols != k)
    rhs = np.zeros(n - 1)
    pinned = (cols == k) & (rows != k)
    np.add.at(rhs, rows[pinned] - (rows[pinned] > k), -vals[pinned])
    r = rows[keep] - (rows[keep] > k)
    q = cols[keep] - (cols[keep] > k)
    lower, upper = kmax + 1, c + 1
    ab = np.zeros((lower + upper + 1, n - 1))
    np.add.at(ab, (upper + r - q, q), vals[keep])
    x = solve_banded((lower, upper), ab, rhs, check_finite=False)
    pi = np.clip(np.insert(x, k, 1.0), 0.0, None)
    return pi / pi.sum()


@dataclass(frozen=True)
class MDcWait:
    """Exact waiting-time law of one M/D/c station.

    Attributes
    ----------
    arrival_rate, service_time : float
        ``lam`` (per second) and ``D`` (seconds).
    servers : int
    queue_pmf : ndarray
        Law of ``R = (Q - c)^+``, the number waiting at an arbitrary time.
    """

    arrival_rate: float
    service_time: float
    servers: int
    queue_pmf: np.ndarray

    @property
    def mean(self) -> float:
        """``E[W] = E[R] / lam`` (seconds)."""
        return float(np.dot(np.arange(len(self.queue_pmf)), self.queue_pmf)
                     / self.arrival_rate)

    def cdf(self, t: float | np.ndarray) -> float | np.ndarray:
        """``P(W <= t)`` by Franx's formula."""
        tt = np.atleast_1d(np.asarray(t, dtype=float))
        d, c, lam = self.service_time, self.servers, self.arrival_rate
        k = np.floor(tt / d)
        u = tt - k * d
        j = np.arange(len(self.queue_pmf))
        out = np.empty_like(tt)
        for i, (ki, ui) in enumerate(zip(k, u, strict=True)):
            if tt[i] < 0:
                out[i] = 0.0
                continue
            limit = (ki + 1) * c - 1 - j
            out[i] = float(np.dot(self.queue_pmf, sps.poisson.cdf(limit, lam * (d - ui))))
        return float(out[0]) if np.ndim(t) == 0 else out

    @property
    def delay_probability(self) -> float:
        """``P(W > 0) = 1 - P(R + Poisson(lam D) <= c - 1)``."""
        return 1.0 - float(self.cdf(0.0))

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the wait (seconds): a root of Franx's CDF."""
        if not 0.0 < q < 1.0:
            raise ValueError(f"q = {q!r}: must be in (0, 1)")
        if self.cdf(0.0) >= q:
            return 0.0
        d = self.service_time
        k = 0
        while self.cdf((k + 1) * d) < q:
            k += 1
            if k > 10_000_000:
                raise RuntimeError("M/D/c quantile did not bracket")
        lo, hi = k * d, (k + 1) * d
        return float(brentq(lambda x: self.cdf(x) - q, lo, hi, xtol=1e-15 * hi + 1e-300,
                            rtol=4 * np.finfo(float).eps))


@lru_cache(maxsize=4096)
def mdc_wait(arrival_rate: float, service_time: float, servers: int) -> MDcWait:
    """Exact M/D/c waiting-time law (cached per point).

    Raises
    ------
    ValueError
        For a non-positive rate or service time, fewer than one server, or
        ``rho = lam D / c >= 1`` (no stationary law).
    MDcTooLarge
        When the chain would exceed :data:`MAX_CHAIN_ENTRIES` (very near saturation).

    Examples
    --------
    >>> w = mdc_wait(3.2, 1.0, 4)       # M/D/4 at rho 0.8
    >>> round(w.mean, 6), round(w.delay_probability, 6)
    (0.386095, 0.578282)
    """
    if not (np.isfinite(arrival_rate) and arrival_rate > 0):
        raise ValueError(f"arrival_rate = {arrival_rate!r}: must be a finite number > 0")
    if not (np.isfinite(service_time) and service_time > 0):
        raise ValueError(f"service_time = {service_time!r}: must be a finite number > 0")
    if servers < 1 or int(servers) != servers:
        raise ValueError(f"servers = {servers!r}: must be a whole number >= 1")
    c = int(servers)
    m = arrival_rate * service_time
    if m >= c:
        raise ValueError(f"rho = {m / c!r}: must be < 1 for a stationary M/D/c law")
    rho = m / c
    # the queue's tail decays at least geometrically in rho: start where rho^k ~ 1e-16
    n = int(c + m + 10.0 * np.sqrt(m + 1.0) + 40.0 + np.log(1e-16) / np.log(rho))
    while True:
        _check_size(m, c, n)
        pi = _stationary(m, c, n)
        if pi[int(0.9 * n):].sum() < _TAIL_MASS or n > 2_000_000:
            break
        n *= 2
    r = np.concatenate(([pi[: c + 1].sum()], pi[c + 1:]))
    return MDcWait(float(arrival_rate), float(service_time), c, r)


def warn_fallback(what: str, errors: list[str],
                  instead: str = "Cosmetatos's M/D/c approximation") -> None:
    """One :class:`ExactFallbackWarning` naming the fallback and the first point."""
    if errors:
        import warnings

        warnings.warn(f"{what} at {len(errors)} point(s) ({errors[0]}); {instead} used "
                      "there instead", ExactFallbackWarning, stacklevel=3)


def _over_points(arrival_rate, service_time, servers, value, unstable: float) -> np.ndarray:
    """``value(MDcWait)`` at every broadcast point; 0 at no load, ``unstable`` at rho >= 1,
    ``nan`` where the exact chain is too large (:class:`MDcTooLarge`; callers fall back)."""
    lam, d, c = np.broadcast_arrays(np.asarray(arrival_rate, float),
                                    np.asarray(service_time, float), np.asarray(servers, float))
    out = np.empty(lam.shape)
    for idx in np.ndindex(lam.shape):
        if lam[idx] == 0:
            out[idx] = 0.0
        elif lam[idx] * d[idx] >= c[idx]:
            out[idx] = unstable
        else:
            try:
                out[idx] = value(mdc_wait(float(lam[idx]), float(d[idx]), int(c[idx])))
            except MDcTooLarge:
                out[idx] = np.nan
    return out


def too_large_points(arrival_rate, service_time, servers, values) -> list[str]:
    """Descriptions of the points where ``values`` (from :func:`_over_points`) is nan."""
    lam, d, c, v = np.broadcast_arrays(np.asarray(arrival_rate, float),
                                       np.asarray(service_time, float),
                                       np.asarray(servers, float), np.asarray(values, float))
    return [point_name(ci, li * di / ci) for li, di, ci, vi in
            zip(lam.ravel(), d.ravel(), c.ravel(), v.ravel(), strict=True) if np.isnan(vi)]


def mdc_mean_wait(arrival_rate, service_time, servers) -> np.ndarray:
    """Exact M/D/c mean wait over broadcast arrays (``inf`` where unstable, 0 at no load)."""
    return _over_points(arrival_rate, service_time, servers, lambda w: w.mean, np.inf)


def mdc_delay_probability(arrival_rate, service_time, servers) -> np.ndarray:
    """Exact M/D/c ``P(W > 0)`` over broadcast arrays (1 where unstable, 0 at no load)."""
    return _over_points(arrival_rate, service_time, servers,
                        lambda w: w.delay_probability, 1.0)
