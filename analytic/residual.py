r"""The law of a positive wait as a geometric sum of residual services.

In M/G/1 the wait is exactly a geometric number of equilibrium residual service times
(Pollaczek-Khinchine; Takacs 1962): given that it is positive,

.. math:: W \mid W > 0 \;=\; \sum_{i=1}^{N} R_i,\qquad P(N = n) = (1-\rho)\rho^{n-1},
          \qquad P(R > t) = \frac{E[(S - t)^+]}{E[S]}.

With ``c`` servers a waiting request moves up at every departure of the busy pool, and
the departures of ``c`` busy servers are a superposition of renewal processes whose
forward recurrence time is the least of ``c`` residuals (its law tends to the
exponential as ``c`` grows: Palm-Khintchine). The law used here keeps the geometric sum
and replaces ``R`` by the least of ``k`` independent residuals,
``P(M > t) = P(R > t)^k``:

- ``k = 1`` is the exact M/G/1 law (any service law, heavy tails included);
- ``k = c`` takes every departure as independent of the last (too light a tail with
  heavy-tailed service: the long services that make the long waits hold several servers
  at once);
- between them ``k = c^alpha`` with :data:`SERVER_EXPONENT` (empirical, chosen on the
  fidelity grid of issue 14 and checked on its holdout).

Only the *shape* is taken from this law: :func:`conditional_wait_shape` returns it scaled
to mean 1, and the estimate scales it to the mean-wait method's ``E[W] / P(W > 0)``.

Computation: ``P(R > t)`` is exact for one token law (partial moments of its pmf) and
uses the second law's quantised nodes for a sum of two (monolithic service); the
geometric sum is computed on a uniform grid by FFT, ``(1-rho) phi / (1 - rho phi)``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from spec import TokenDist

#: ``k = c ** SERVER_EXPONENT`` residuals (see the module docstring).
SERVER_EXPONENT = 0.25
#: From utilisation ``1 - HEAVY_TRAFFIC`` on, the shape is the exponential: the
#: heavy-traffic limit of ``W | W > 0`` (Kingman 1962), where the sum has thousands of
#: terms and the grid could no longer hold it.
HEAVY_TRAFFIC = 1e-3
#: Points of the uniform grid of the geometric sum (a power of two).
GRID_POINTS = 2**15
#: Grid step of the geometric sum in units of ``E[M]``.
STEPS_PER_MEAN = 32
#: Points of the returned shape, on the grid ``x_j = SHAPE_SPAN (j / (SHAPE_POINTS - 1))^2``
#: of ``t / E[W | W > 0]`` (fine near zero, where a heavy-tailed wait has its mass).
SHAPE_POINTS = 1024
#: Span of the returned shape in conditional means.
SHAPE_SPAN = 64.0
#: The shape's grid (see :data:`SHAPE_POINTS`).
SHAPE_GRID = SHAPE_SPAN * np.linspace(0.0, 1.0, SHAPE_POINTS) ** 2


def _partial_moments(values: np.ndarray, probs: np.ndarray):
    """``t -> E[(V - t)^+]`` for a discrete law (exact: tail sums over the sorted
    support)."""
    tail_p = np.concatenate((np.cumsum(probs[::-1])[::-1], [0.0]))
    tail_m = np.concatenate((np.cumsum((values * probs)[::-1])[::-1], [0.0]))

    def excess(t: np.ndarray) -> np.ndarray:
        j = np.searchsorted(values, t, side="right")
        return tail_m[j] - t * tail_p[j]

    return excess


@lru_cache(maxsize=64)
def residual_survival(terms: tuple[tuple[TokenDist, float], ...]):
    r"""``t -> P(R > t)`` for the equilibrium residual of ``S = sum_i N_i / r_i``.

    ``P(R > t) = E[(S - t)^+] / E[S]``. One term: exact from the pmf. Two terms: the
    first exactly, the second through its quantised nodes ``(b_j, w_j)`` (bin-wise
    conditional means that keep its mean):
    :math:`E[(S - t)^+] \approx \sum_j w_j\,E[(A - (t - b_j))^+]`.

    Returns the function and ``E[S]``.
    """
    from .ttft import _nodes  # the quantised token laws of the TTFT solver

    if not 1 <= len(terms) <= 2:
        raise ValueError(f"terms: one or two (token law, rate) pairs, got {len(terms)}")
    (dist_a, rate_a), rest = terms[0], terms[1:]
    values, probs = dist_a.pmf()
    probs = probs / probs.sum()
    excess_a = _partial_moments(values / rate_a, probs)
    mean = float(np.sum(values * probs)) / rate_a
    if rest:
        (dist_b, rate_b), = rest
        nodes, weights = _nodes(dist_b)
        nodes = nodes / rate_b
        mean += float(np.sum(nodes * weights))

        def excess(t):
            t = np.asarray(t, dtype=float)
            shifted = t[..., None] - nodes
            below = np.maximum(-shifted, 0.0)  # t < b_j: all of A - (t - b_j) counts
            # a sum, not a BLAS product: the same bits whatever the thread count
            return np.sum((excess_a(np.maximum(shifted, 0.0)) + below) * weights, axis=-1)
    else:
        excess = excess_a

    def survival(t):
        return np.clip(excess(np.asarray(t, dtype=float)) / mean, 0.0, 1.0)

    return survival, mean


def servers_to_residuals(servers):
    """``k = c ** SERVER_EXPONENT``: residuals whose least is one step of the sum."""
    return np.asarray(servers, dtype=float) ** SERVER_EXPONENT


@lru_cache(maxsize=64)
def _survival_table(terms: tuple[tuple[TokenDist, float], ...]) -> tuple[np.ndarray, np.ndarray]:
    """``P(R > t)`` of the service of ``terms`` on :func:`_log_grid` (cached)."""
    return _log_grid(residual_survival(terms)[0])


def _log_grid(survival) -> tuple[np.ndarray, np.ndarray]:
    """``t`` from 0 over 2000 geometric steps from ``1e-9`` of a ``t`` where
    ``P(R > t) < 1e-12`` up to it, and ``P(R > t)`` there: the residual law, which may
    span many decades, tabulated once."""
    t = np.concatenate(([0.0], np.geomspace(1e-9, 1.0, 2000))) * _upper(survival)
    return t, survival(t)


@lru_cache(maxsize=8192)
def conditional_wait_shape(terms: tuple[tuple[TokenDist, float], ...], utilisation: float,
                           residuals: float) -> np.ndarray:
    """:func:`wait_shape` for the service ``S = sum_i N_i / r_i`` of ``terms`` (cached)."""
    return _shape(*_survival_table(terms), utilisation, residuals)


def wait_shape(survival, utilisation: float, residuals: float) -> np.ndarray:
    r"""Survival function of ``W | W > 0`` scaled to mean 1, on :data:`SHAPE_GRID`.

    ``W | W > 0 = M_1 + ... + M_N`` with ``P(N = n) = (1 - rho) rho^{n-1}`` and
    ``P(M > t) = P(R > t)^k`` (``survival`` is ``t -> P(R > t)``, ``k = residuals``; see
    the module docstring). ``M`` is put on a grid of ``GRID_POINTS`` steps of
    ``E[M] / STEPS_PER_MEAN``, or longer ones where the sum's mean ``E[M] / (1 - rho)``
    needs them to span 1.5 ``SHAPE_SPAN`` conditional means, each cell's mass split
    equally between its two ends (which keeps the cell's mean when the density is flat
    across it; the mass past the grid goes to the last point); the sum's law is
    :math:`\mathrm{IFFT}[(1-\rho)\phi_M / (1 - \rho\phi_M)]` on twice the grid (no
    wrap-around), and its mean ``E[M] / (1 - rho)`` is taken on the grid too.
    """
    return _shape(*_log_grid(survival), utilisation, residuals)


def _shape(t_log: np.ndarray, sf_r: np.ndarray, utilisation: float,
           residuals: float) -> np.ndarray:
    """:func:`wait_shape` from ``P(R > t)`` tabulated on ``t_log``."""
    rho = float(utilisation)
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"utilisation = {rho!r}: must be in [0, 1)")
    if not residuals >= 1.0:
        raise ValueError(f"residuals = {residuals!r}: must be >= 1")
    if rho >= 1.0 - HEAVY_TRAFFIC:
        return np.exp(-SHAPE_GRID)
    sf_log = sf_r ** residuals
    mean_m = float(np.sum(np.diff(t_log) * (sf_log[1:] + sf_log[:-1]) / 2.0))
    n = GRID_POINTS
    # fine enough for M, long enough for 1.5 x SHAPE_SPAN conditional means
    dt = max(mean_m / STEPS_PER_MEAN, 1.5 * SHAPE_SPAN * mean_m / ((1.0 - rho) * n))
    sf = np.interp(np.arange(n) * dt, t_log, sf_log, right=0.0)
    cells = np.clip(-np.diff(sf), 0.0, None)  # mass of ((j-1) dt, j dt], j = 1..n-1
    pmf = np.zeros(n)
    pmf[:-1] += cells / 2.0  # each cell split between its ends: keeps its mean
    pmf[1:] += cells / 2.0
    pmf[-1] += sf[-1]  # the mass past the grid
    pmf /= pmf.sum()
    phi = np.fft.rfft(pmf, 2 * n)
    law = np.fft.irfft((1.0 - rho) * phi / (1.0 - rho * phi), 2 * n)[:n]
    law = np.clip(law, 0.0, None)
    # a lattice point's mass stands for the cell around it: half of it lies above
    cdf = np.clip(np.cumsum(law) - law / 2.0, 0.0, 1.0)
    cdf[0] = 0.0  # R has a density (P(R > 0) = 1): no mass at zero itself
    grid_mean = float(np.sum(np.arange(n) * pmf)) * dt / (1.0 - rho)
    out = 1.0 - np.interp(SHAPE_GRID * grid_mean, np.arange(n) * dt, cdf, right=1.0)
    out[0] = 1.0
    return np.clip(out, 0.0, 1.0)


def _upper(survival) -> float:
    """A ``t`` with ``P(R > t) < 1e-12`` (doubling from a microsecond)."""
    t = 1e-6
    while survival(np.array([t]))[0] > 1e-12 and t < 1e12:
        t *= 2.0
    return t


def shape_survival(y: np.ndarray, scale: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``P(G > y)`` for laws given as rows of ``table`` (:func:`wait_shape` shapes) scaled
    to means ``scale``: linear interpolation on :data:`SHAPE_GRID`, 0 past its end.

    ``y`` is ``(E, K)``, ``scale`` ``(E, 1)`` and ``table`` ``(E, SHAPE_POINTS)``.
    """
    last = SHAPE_POINTS - 1
    x = np.maximum(y / scale, 0.0)
    u = np.sqrt(x / SHAPE_SPAN) * last  # the grid is quadratic in the index
    i = np.minimum(np.floor(u).astype(np.int64), last - 1)
    x0, x1 = SHAPE_GRID[i], SHAPE_GRID[i + 1]
    w = (np.clip(x, x0, x1) - x0) / (x1 - x0)  # linear in x between grid points
    lo = np.take_along_axis(table, i, axis=1)
    hi = np.take_along_axis(table, i + 1, axis=1)
    return np.where(u >= last, 0.0, lo + w * (hi - lo))


def sum_shape(table1: np.ndarray, mean1: np.ndarray, table2: np.ndarray,
              mean2: np.ndarray, points: int = 4096) -> np.ndarray:
    """Shape (on :data:`SHAPE_GRID`, scaled to mean 1) of ``G1 + G2`` for independent
    ``G1``, ``G2`` given as shapes scaled to ``mean1``, ``mean2`` (rows: one pair each).

    Each law is put on a uniform grid of ``points`` steps over ``SHAPE_SPAN`` times the
    sum's mean, each cell's mass split between its ends, and convolved by FFT.
    """
    total = (mean1 + mean2)[:, None]
    t = np.linspace(0.0, SHAPE_SPAN, points)[None, :] * total
    masses = []
    for table, mean in ((table1, mean1), (table2, mean2)):
        sf = shape_survival(t, mean[:, None], table)
        cells = np.clip(-np.diff(sf, axis=1), 0.0, None)
        pmf = np.zeros_like(sf)
        pmf[:, :-1] += cells / 2.0
        pmf[:, 1:] += cells / 2.0
        pmf[:, -1] += sf[:, -1]
        masses.append(pmf)
    law = np.fft.irfft(np.fft.rfft(masses[0], 2 * points, axis=1)
                       * np.fft.rfft(masses[1], 2 * points, axis=1), 2 * points,
                       axis=1)[:, :points]
    law = np.clip(law, 0.0, None)
    cdf = np.clip(np.cumsum(law, axis=1) - law / 2.0, 0.0, 1.0)
    cdf[:, 0] = 0.0
    x = np.linspace(0.0, SHAPE_SPAN, points)
    return np.stack([1.0 - np.interp(SHAPE_GRID, x, row, right=1.0) for row in cdf])


#: Node spacing of the shapes' table in ``v = -ln(1 - rho)`` and in ``ln k``: the shapes
#: at other points are interpolated bilinearly between the four nearest nodes (a mixture
#: of laws of mean 1, so of mean 1 itself).
RHO_STEP = 0.2
K_STEP = 0.1


def interpolated_shapes(terms: tuple[tuple[TokenDist, float], ...], utilisation: np.ndarray,
                        residuals: np.ndarray) -> np.ndarray:
    """Rows of :func:`conditional_wait_shape` at each ``(utilisation, residuals)`` pair,
    interpolated from nodes ``rho_i = 1 - e^{-i RHO_STEP}``, ``k_j = e^{j K_STEP}``
    (each computed once per ``terms`` and cached): grids of thousands of points cost a
    few hundred FFTs, not one each."""
    rho = np.ravel(np.asarray(utilisation, dtype=float))
    k = np.ravel(np.asarray(residuals, dtype=float))
    if np.any((rho < 0) | (rho >= 1)) or np.any(~(k >= 1)):
        raise ValueError("utilisation must be in [0, 1) and residuals >= 1")
    v = -np.log1p(-rho) / RHO_STEP
    lk = np.log(k) / K_STEP
    iv, ik = np.floor(v).astype(np.int64), np.floor(lk).astype(np.int64)
    fv, fk = (v - iv)[:, None], (lk - ik)[:, None]
    out = np.zeros((rho.size, SHAPE_POINTS))
    for di, dj, w in ((0, 0, (1 - fv) * (1 - fk)), (1, 0, fv * (1 - fk)),
                      (0, 1, (1 - fv) * fk), (1, 1, fv * fk)):
        pairs = np.stack([iv + di, ik + dj], axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        nodes = np.stack([conditional_wait_shape(terms, 1.0 - math.exp(-i * RHO_STEP),
                                                 math.exp(j * K_STEP))
                          for i, j in uniq.tolist()])
        out += w * nodes[np.ravel(inv)]
    return out
