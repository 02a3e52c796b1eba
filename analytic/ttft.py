"""TTFT estimates for a monolithic or disaggregated cluster, over whole grids at once.

**Monolithic** (M/G/c): service ``S = P/r_p + O/r_d`` on ``c`` GPUs;
``TTFT = W + P/r_p + 1/r_d``.

**Disaggregated** (tandem, Whitt's QNA): M/G/c1 prefill with ``S1 = P/r_p``, KV transfer
``kappa P``, then GI/G/c2 decode with ``S2 = O/r_d`` (the *whole* decode) and arrival
variability ``ca2 = cd2`` of the prefill pool's departures;
``TTFT = W1 + P/r_p + kappa P + W2 + 1/r_d``.

Service-time moments come from the exact moments of the rounded, clipped token laws.
Mean TTFT is the exact sum of the stage means (given each stage's mean wait). Percentiles
come from the law of ``X + W`` computed numerically, where ``X = P (1/r_p + kappa) +
1/r_d`` is taken from the exact token law and each wait is an atom at zero plus, for
those who wait, a law with the method's conditional mean: by default the shape of a
geometric sum of residual services (:mod:`analytic.residual`; exact for M/G/1 and
M/M/c), or a gamma or an exponential (``wait_law``). Waits of different stages are
treated as independent: they are mildly positively correlated, so disaggregated P99 is
a few percent low. A monolithic cluster with fixed prompt and output lengths (M/D/c)
gets the exact Crommelin/Franx waiting-time law instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import special
from scipy.optimize import elementwise

from spec import DisaggregatedCluster, MonolithicCluster, TokenDist, Workload, _check

from . import queues, residual
from .queues import DEFAULT_METHOD, check_method

#: Probability edges of the quantisation of ``X``: fine in the body, finer in the tail.
_EDGES = np.unique(np.concatenate([
    np.linspace(0.0, 0.99, 67),
    1.0 - np.geomspace(0.01, 1e-9, 37),
    [1.0],
]))


#: Laws of a positive wait (see :func:`estimate`).
WAIT_LAWS: tuple[str, ...] = ("residual", "gamma", "exponential")
DEFAULT_WAIT_LAW = "residual"
#: Arrival variability of the decode pool (see :func:`estimate`).
LINKINGS: tuple[str, ...] = ("timescale", "qna", "poisson")
DEFAULT_LINKING = "timescale"


def quantile_key(q: float) -> str:
    """``p99_ttft_s`` for ``q = 0.99``."""
    return f"p{q * 100:g}_ttft_s"


@lru_cache(maxsize=256)
def _moments(dist: TokenDist) -> tuple[float, float]:
    """Exact mean and variance of a token law (cached: the pmf sums are not free)."""
    return dist.mean_tokens(), dist.var_tokens()


def _cumulative(probs: np.ndarray) -> np.ndarray:
    """Cumulative sums accurate at both ends: forward sums below 1/2, one minus the
    backward (tail) sums above, so that the upper tail is not lost to rounding."""
    head = np.cumsum(probs)
    tail = np.cumsum(probs[::-1])[::-1]  # tail[k] = sum_{j >= k} p_j
    upper = 1.0 - np.concatenate((tail[1:], [0.0]))
    return np.where(head < 0.5, head, upper)


@lru_cache(maxsize=256)
def _nodes(dist: TokenDist) -> tuple[np.ndarray, np.ndarray]:
    """Quantised token law: bin-wise conditional means and their probabilities.

    The exact pmf's quantile function is integrated over probability bins (``_EDGES``),
    so each node is the exact conditional mean of its bin and the nodes keep the exact
    mean of ``N``.
    """
    values, probs = dist.pmf()
    probs = probs / probs.sum()
    cdf = np.concatenate(([0.0], _cumulative(probs)))
    cm = np.concatenate(([0.0], np.cumsum(values * probs)))
    u = np.clip(_EDGES, 0.0, cdf[-1])
    k = np.clip(np.searchsorted(cdf, u, side="right") - 1, 0, len(values) - 1)
    partial = cm[k] + (u - cdf[k]) * values[k]
    w = np.diff(u)
    keep = w > 0
    return np.diff(partial)[keep] / w[keep], w[keep]


@lru_cache(maxsize=256)
def _token_cdf(dist: TokenDist) -> tuple[np.ndarray, np.ndarray]:
    values, probs = dist.pmf()
    return values, _cumulative(probs / probs.sum())


def _token_quantile(dist: TokenDist, q: float) -> float:
    """Exact ``q`` quantile of the token count: the least ``n`` with ``P(N <= n) >= q``
    (the CDF of :func:`_cumulative` ends at exactly 1, so every ``q <= 1`` has one)."""
    values, cdf = _token_cdf(dist)
    return float(values[int(np.searchsorted(cdf, q))])


def _gamma_sf(y: np.ndarray, mean: np.ndarray, scv: np.ndarray) -> np.ndarray:
    """``P(G > y)`` for a gamma law of the given mean and squared coefficient of variation
    (the exponential when ``scv = 1``)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return special.gammaincc(1.0 / scv, y / (mean * scv))


def _gamma_isf(p: np.ndarray, mean: np.ndarray, scv: np.ndarray) -> np.ndarray:
    """The ``y`` with ``P(G > y) = p`` (inverse of :func:`_gamma_sf`)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return special.gammainccinv(1.0 / scv, p) * mean * scv


def _sum_law(m1, s1, m2, s2):
    """Mean and SCV of ``G1 + G2`` for independent ``G1``, ``G2`` (the gamma fitted to a
    sum of two conditional waits has these two moments)."""
    m = m1 + m2
    return m, (s1 * m1**2 + s2 * m2**2) / m**2


def _wait_sf(y: np.ndarray, a: np.ndarray, m1: np.ndarray, s1: np.ndarray, b: np.ndarray,
             m2: np.ndarray, s2: np.ndarray, exact_sum: bool = False) -> np.ndarray:
    r"""``P(W1 + W2 > y)`` for ``y >= 0``, ``Wi = (1 - p_i) delta_0 + p_i G_i``.

    ``G_i`` is a gamma law with mean ``m_i`` and squared coefficient of variation
    ``s_i`` (exponential when ``s_i = 1``); ``a = p_1``, ``b = p_2``:

    .. math:: a(1-b)\bar G_1(y) + (1-a)b\,\bar G_2(y) + ab\,\bar G_{12}(y)

    where ``G_12``, the law of ``G_1 + G_2``, is the gamma with the sum's mean and
    variance (moment-matched). With ``exact_sum`` (both laws exponential) ``G_12`` is the
    exact hypoexponential law instead,
    :math:`(\theta_2 e^{-\theta_1 y} - \theta_1 e^{-\theta_2 y})/(\theta_2 - \theta_1)`,
    :math:`(1 + \theta y) e^{-\theta y}` when the rates ``theta_i = 1/m_i`` coincide.
    """
    g1 = _gamma_sf(y, m1, s1)
    g2 = _gamma_sf(y, m2, s2)
    if exact_sum:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            th1, th2 = 1.0 / m1, 1.0 / m2
            close = np.abs(th1 - th2) <= 1e-7 * np.maximum(th1, th2)
            g12 = np.where(close, (1.0 + th1 * y) * g1, (th2 * g1 - th1 * g2) / (th2 - th1))
    else:
        g12 = _gamma_sf(y, *_sum_law(m1, s1, m2, s2))
    return a * (1 - b) * g1 + (1 - a) * b * g2 + np.where(a * b > 0, a * b * g12, 0.0)


#: Points whose residual-law quantiles are solved together (the shapes cost 8 KiB a
#: point and pool, their sums as much again: about 100 MiB a chunk at most).
QUANTILE_CHUNK = 4096
#: The law's arrays that hold one value a point (the rest are shared).
_PER_POINT = ("a", "m1", "s1", "b", "m2", "s2", "stable")


@dataclass
class TTFTEstimate:
    """Closed-form TTFT of one cluster over a grid of points.

    Array attributes share one shape (the broadcast of the inputs); ``dims`` and
    ``coords`` name it when the inputs were xarray objects (see :func:`estimate_grid`).
    """

    mode: str
    method: str
    wait_law: str
    linking: str
    mean_ttft_s: np.ndarray
    mean_wait_s: dict[str, np.ndarray]
    delay_probability: dict[str, np.ndarray]
    utilisation: dict[str, np.ndarray]
    stable: np.ndarray
    mean_prefill_s: float
    mean_transfer_s: float
    first_token_s: float
    decode_arrival_scv: np.ndarray | None
    quantiles: dict[float, np.ndarray] = field(default_factory=dict)
    dims: tuple[str, ...] | None = None
    coords: dict[str, Any] | None = None
    _law: dict[str, Any] = field(default_factory=dict, repr=False)

    def quantile(self, q: float | list[float]) -> np.ndarray | float:
        """TTFT quantile(s) ``q`` in seconds (``inf`` where unstable).

        A list of ``q`` gives a leading axis of that length.
        """
        qs = np.atleast_1d(np.asarray(q, dtype=float))  # pragma: no mutate (float64 either way)
        if np.any((qs <= 0) | (qs >= 1)):
            raise ValueError(f"q = {q!r}: must be in (0, 1)")
        self._solve([float(v) for v in qs])
        out = np.stack([self.quantiles[float(v)] for v in qs])
        out = out if np.ndim(q) else out[0]
        return float(out) if np.ndim(out) == 0 else out

    def _quantile_one(self, q: float) -> np.ndarray:
        self._solve([q])
        return self.quantiles[q]

    def _solve(self, qs: list[float]) -> None:
        """Solve the quantiles ``qs`` not yet known; with the residual law, a grid of more
        than :data:`QUANTILE_CHUNK` points a chunk at a time, every quantile of a chunk
        on the same shapes (built once a chunk)."""
        todo = [q for q in dict.fromkeys(qs) if q not in self.quantiles]
        if not todo:
            return
        law = self._law
        # pragma: no mutate start (chunks bound the memory, never the numbers: a grid
        # solved in chunks equals it solved whole, tests/test_residual_law.py)
        shape = np.shape(law["a"])
        n = int(np.prod(shape))
        if law["shapes"] is None or law["exact"] is not None or n <= QUANTILE_CHUNK:
            # pragma: no mutate end
            for q in todo:
                self.quantiles[q] = _solve_quantile(q, **law)
            return
        flat = {k: np.ravel(np.broadcast_to(law[k], shape)) for k in _PER_POINT}
        parts: dict[float, list[np.ndarray]] = {q: [] for q in todo}
        for start in range(0, n, QUANTILE_CHUNK):
            cut = slice(start, start + QUANTILE_CHUNK)
            chunk = {**law, **{k: v[cut] for k, v in flat.items()},
                     "shapes": law["shapes"].subset(cut)}
            for q in todo:
                parts[q].append(_solve_quantile(q, **chunk))
        for q in todo:
            self.quantiles[q] = np.concatenate(parts[q]).reshape(shape)

    def __getattr__(self, name: str):
        # p50_ttft_s, p99_ttft_s, p99.9_ttft_s ... on demand
        if name.startswith("p") and name.endswith("_ttft_s"):  # pragma: no mutate (else fails)
            try:
                q = float(name[1:-7]) / 100.0
            except ValueError:
                raise AttributeError(name) from None
            return _out(self._quantile_one(q))
        raise AttributeError(name)

    def summary(self, quantiles=(0.5, 0.9, 0.99)) -> dict[str, Any]:
        """The headline numbers as a flat dict (scalars for a one-point estimate)."""
        self._solve([float(q) for q in quantiles])
        out: dict[str, Any] = {"mode": self.mode, "method": self.method,
                               "wait_law": self.wait_law, "linking": self.linking,
                               "mean_ttft_s": _out(self.mean_ttft_s)}
        for q in quantiles:
            out[quantile_key(q)] = _out(self._quantile_one(q))
        for pool in self.mean_wait_s:
            out[f"mean_wait_{pool}_s"] = _out(self.mean_wait_s[pool])
            out[f"delay_probability_{pool}"] = _out(self.delay_probability[pool])
            out[f"utilisation_{pool}"] = _out(self.utilisation[pool])
        if self.decode_arrival_scv is not None:
            out["decode_arrival_scv"] = _out(self.decode_arrival_scv)
        out["mean_prefill_s"] = self.mean_prefill_s
        out["mean_transfer_s"] = self.mean_transfer_s
        out["first_token_s"] = self.first_token_s
        out["stable"] = _out(self.stable) if np.ndim(self.stable) else bool(self.stable)
        return out

    def to_xarray(self, quantiles=(0.5, 0.9, 0.99)):
        """An ``xarray.Dataset`` with units and long names in attrs."""
        import xarray as xr

        shape = np.shape(self.mean_ttft_s)
        dims = self.dims or tuple(f"dim_{i}" for i in range(len(shape)))

        def var(x, units, long_name):
            return (dims, np.broadcast_to(x, shape), {"units": units, "long_name": long_name})

        self._solve([float(q) for q in quantiles])
        data = {"mean_ttft_s": var(self.mean_ttft_s, "s", "mean TTFT")}
        for q in quantiles:
            data[quantile_key(q)] = var(self._quantile_one(q), "s", f"P{q * 100:g} TTFT")
        for pool in self.mean_wait_s:
            data[f"mean_wait_{pool}_s"] = var(self.mean_wait_s[pool], "s",
                                              f"mean wait for a {pool} GPU")
            data[f"delay_probability_{pool}"] = var(self.delay_probability[pool], "1",
                                                    f"P(wait > 0) at {pool}")
            data[f"utilisation_{pool}"] = var(self.utilisation[pool], "1",
                                              f"{pool} utilisation")
        data["stable"] = var(self.stable, "1", "offered load < 1 in every pool")
        return xr.Dataset(data, coords=self.coords or {},
                          attrs={"mode": self.mode, "method": self.method,
                                 "wait_law": self.wait_law, "linking": self.linking})


def _out(x):
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


class _Shapes:
    """The residual law's conditional-wait shapes of every point (:mod:`analytic.residual`),
    built the first time a quantile needs them: ``first`` and ``second`` are
    ``(points, SHAPE_POINTS)`` rows (the second pool's only for disaggregated clusters;
    8 KiB a point each, which is why :meth:`TTFTEstimate.quantile` solves large grids
    :data:`QUANTILE_CHUNK` points at a time); the shape of their sum is built for a point
    the first time a quantile needs it (one FFT convolution each).

    Each pool is given as ``(terms, utilisation, servers, active)``, the last three
    flat arrays over the points (see :meth:`build`).
    """

    def __init__(self, first: tuple, second: tuple | None) -> None:
        self._pools = (first, second)
        self._rows: list[np.ndarray | None] = [None, None]
        self._sum: dict[int, np.ndarray] = {}

    @classmethod
    def of(cls, shape: tuple[int, ...], first: tuple, second: tuple | None = None
           ) -> _Shapes:
        """From ``(terms, utilisation, servers, active)`` per pool, broadcast to the
        grid's ``shape`` and flattened (a point's row is its flat index)."""
        def flat(pool):
            terms, *arrays = pool
            return (terms, *(np.ravel(np.broadcast_to(v, shape)) for v in arrays))
        return cls(flat(first), None if second is None else flat(second))

    def subset(self, points: slice) -> _Shapes:
        """The shapes of the points ``points`` only (rows renumbered from 0), unbuilt."""
        return _Shapes(*(None if pool is None else
                         (pool[0], *(v[points] for v in pool[1:]))
                         for pool in self._pools))

    @property
    def first(self) -> np.ndarray:
        return self._built(0)

    @property
    def second(self) -> np.ndarray | None:
        return None if self._pools[1] is None else self._built(1)

    def _built(self, i: int) -> np.ndarray:
        if self._rows[i] is None:
            self._rows[i] = self.build(*self._pools[i])
        return self._rows[i]

    @staticmethod
    def build(terms, u: np.ndarray, c: np.ndarray, act: np.ndarray) -> np.ndarray:
        """Rows of the residual law's shape at each point's utilisation ``u`` and
        ``k = c ** SERVER_EXPONENT`` (:func:`analytic.residual.interpolated_shapes`); the
        exponential where ``act`` is false (nobody waits, or unstable: never used). The
        arrays are flat, one value a point (:meth:`of`)."""
        rows = np.tile(np.exp(-residual.SHAPE_GRID), (u.size, 1))
        if np.any(act):
            rows[act] = residual.interpolated_shapes(
                terms, u[act], residual.servers_to_residuals(c[act]))
        return rows

    def _sum_rows(self, index: np.ndarray, m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
        todo = [i for i in dict.fromkeys(index.tolist()) if i not in self._sum]
        if todo:
            pos = {i: k for k, i in enumerate(index.tolist())}
            at = np.array([pos[i] for i in todo])
            rows = residual.sum_shape(self.first[todo], m1[at], self.second[todo], m2[at])
            self._sum.update(zip(todo, rows, strict=True))  # pragma: no mutate (equal lengths)
        return np.stack([self._sum[i] for i in index.tolist()])

    def wait_sf(self, y, index, a, m1, b, m2) -> np.ndarray:
        """``P(W1 + W2 > y)`` as :func:`_wait_sf` gives it, with the tabulated laws."""
        g1 = residual.shape_survival(y, m1, self.first[index])
        if self.second is None:
            return a * g1
        g2 = residual.shape_survival(y, m2, self.second[index])
        both = (a * b > 0)[:, 0]  # pragma: no mutate (work saved: a b g12 is 0 elsewhere)
        g12 = np.zeros_like(y)
        if np.any(both):
            rows = self._sum_rows(index[both], m1[both, 0], m2[both, 0])
            g12[both] = residual.shape_survival(y[both], (m1 + m2)[both], rows)
        return a * (1 - b) * g1 + (1 - a) * b * g2 + a * b * g12

    def wait_isf(self, tail: float, index, a, m1, b, m2) -> list[np.ndarray]:
        """Per waiting component, a ``y`` it passes with probability at most ``tail``."""
        # pragma: no mutate start (the quantile's upper bracket: any bound gives the same
        # root; tests/test_residual_law.py checks these ends against exponential quantiles)
        def isf(rows, scale):
            past = np.argmax(rows <= tail, axis=1)  # 0 when never: the grid's end then
            x = np.where(rows[:, -1] <= tail, residual.SHAPE_GRID[past], residual.SHAPE_SPAN)
            return x * scale

        ends = [np.where(a > 0, isf(self.first[index], m1), 0.0)]
        if self.second is not None:
            ends.append(np.where(b > 0, isf(self.second[index], m2), 0.0))
            both = a * b > 0
            g12 = np.zeros_like(a)
            if np.any(both):
                g12[both] = isf(self._sum_rows(index[both], m1[both], m2[both]),
                                (m1 + m2)[both])
            ends.append(g12)
        # pragma: no mutate end
        return ends


def _solve_quantile(q: float, *, nodes: np.ndarray, weights: np.ndarray, x_cdf,
                    a: np.ndarray, m1: np.ndarray, s1: np.ndarray, b: np.ndarray,
                    m2: np.ndarray, s2: np.ndarray, exact_sum: bool, stable: np.ndarray,
                    exact: Any, x_quantile, shapes: _Shapes | None = None) -> np.ndarray:
    """Solve ``F(t) = q`` for ``TTFT = X + W1 + W2`` at every point (scipy's ``find_root``).

    ``F(t) = (1-a)(1-b) F_X(t) + sum_i w_i [1{x_i <= t} - (1-a)(1-b) 1{x_i <= t}
    - P(W > t - x_i, W > 0)]``: the atom at zero uses the exact CDF of ``X``, the rest
    the quantised nodes. The waits' conditional laws are gammas of SCV ``s1``, ``s2``
    (:func:`_wait_sf`), or with ``shapes`` the residual law's tabulated shapes
    (:class:`_Shapes`).
    """
    if exact is not None:
        res = exact(q)
        if not np.any(np.isnan(res)):
            return res
        # chains past the work bound (named by _exact_mdc's warning): the general solver
        general = _solve_quantile(q, nodes=nodes, weights=weights, x_cdf=x_cdf, a=a, m1=m1,
                                  s1=s1, b=b, m2=m2, s2=s2, exact_sum=exact_sum,
                                  stable=stable, exact=None, x_quantile=x_quantile,
                                  shapes=shapes)
        return np.where(np.isnan(res), general, res)
    shape = a.shape
    law = [np.ravel(np.broadcast_to(v, shape)) for v in (a, m1, s1, b, m2, s2)]
    st_ = np.ravel(np.broadcast_to(stable, shape))
    res = np.full(st_.shape, np.inf)
    ok = st_.astype(bool)
    if not np.any(ok):
        return res.reshape(shape)
    index = np.flatnonzero(ok).astype(float)  # pragma: no mutate (a point's row in the shapes)
    args = (*(v[ok] for v in law), index)

    def excess(t: np.ndarray, a, m1, s1, b, m2, s2, index) -> np.ndarray:
        """``F(t) - q``; ``find_root`` passes only the points still being solved."""
        zero = (1 - a) * (1 - b)
        y = t[:, None] - nodes[None, :]
        # pragma: no mutate start (y < 0 is masked by pos below; y = 0 has no mass)
        pos = y >= 0
        y = np.where(pos, y, 0.0)
        # pragma: no mutate end
        if shapes is None:
            sf = _wait_sf(y, *(v[:, None] for v in (a, m1, s1, b, m2, s2)),
                          exact_sum=exact_sum)
        else:
            sf = shapes.wait_sf(y, index.astype(np.int64), a[:, None], m1[:, None],
                                b[:, None], m2[:, None])
        # P(W > 0, X + W <= t) from the nodes; P(W = 0, X <= t) exactly
        smooth = ((1 - zero)[:, None] - sf) * pos
        return zero * x_cdf(t) + smooth @ weights - q

    # bracket: X >= 0 and W >= 0 give t >= x_q. Above: each of the (at most three)
    # waiting components is past y with probability <= e, so P(W > y) <= e, and
    # P(X + W > x_{1-e} + y) <= 2e = 1 - q
    a_, m1_, s1_, b_, m2_, s2_, index_ = args
    lo = np.full(a_.shape, x_quantile(q))
    # pragma: no mutate start (any upper bound gives the same root: a looser one costs
    # iterations only, and one that is not a bound raises below; the residual law's
    # ends are tested against exponential quantiles, tests/test_residual_law.py)
    tail = (1.0 - q) / 2.0
    if shapes is not None:
        ends = shapes.wait_isf(tail, index_.astype(np.int64), a_, m1_, b_, m2_)
    else:
        ends = [np.where(a_ > 0, _gamma_isf(tail, m1_, s1_), 0.0),
                np.where(b_ > 0, _gamma_isf(tail, m2_, s2_), 0.0)]
        if not exact_sum:
            ends.append(np.where(a_ * b_ > 0,
                                 _gamma_isf(tail, *_sum_law(m1_, s1_, m2_, s2_)), 0.0))
        else:  # P(G1 + G2 > y1 + y2) <= P(G1 > y1) + P(G2 > y2)
            ends.append(np.where(a_ * b_ > 0, _gamma_isf(tail / 2, m1_, s1_)
                                 + _gamma_isf(tail / 2, m2_, s2_), 0.0))
    hi = np.maximum(x_quantile(1.0 - tail) + np.maximum.reduce(ends), lo)
    # pragma: no mutate end
    at_lo = excess(lo, *args) >= 0  # the atom of W at 0 already reaches q
    res_ok = lo.copy()
    solve = np.flatnonzero(~at_lo)
    if solve.size:
        # Chandrupatla's bracketing method (scipy), to 1 microsecond or 1e-9 relative
        found = elementwise.find_root(
            excess, (lo[solve], hi[solve]), args=tuple(v[solve] for v in args),
            tolerances={"xatol": 1e-6, "xrtol": 1e-9})
        if not np.all(found.status == 0):  # the bound above makes this unreachable
            raise RuntimeError(f"TTFT quantile {q}: root not bracketed or not converged "
                               f"(scipy find_root status {np.unique(found.status)})")
        res_ok[solve] = found.x
    res[ok] = res_ok
    return res.reshape(shape)


def _as_arrays(values: dict[str, Any]):
    """Broadcast the grid inputs; xarray inputs give dims and coords to the result."""
    given = {k: v for k, v in values.items() if v is not None}
    if any(type(v).__name__ == "DataArray" for v in given.values()):
        import xarray as xr

        names = list(given)
        das = [v if type(v).__name__ == "DataArray" else xr.DataArray(v)
               for v in given.values()]
        b = xr.broadcast(*das)
        arrays = dict(zip(names, (x.values for x in b), strict=True))
        return arrays, tuple(b[0].dims), {k: v for k, v in b[0].coords.items()}
    arrays = dict(zip(given, np.broadcast_arrays(*(np.asarray(v, float)
                                                   for v in given.values())), strict=True))
    return arrays, None, None


def estimate(workload: Workload, cluster: MonolithicCluster | DisaggregatedCluster,
             method: str = DEFAULT_METHOD, *, arrival_rate_per_s=None, num_gpus=None,
             prefill_gpus=None, decode_gpus=None, wait_law: str = DEFAULT_WAIT_LAW,
             linking: str = DEFAULT_LINKING) -> TTFTEstimate:
    """Closed-form TTFT of ``cluster`` under ``workload``.

    Parameters
    ----------
    workload : spec.Workload
    cluster : spec.MonolithicCluster or spec.DisaggregatedCluster
    method : str
        Mean-wait method of :func:`analytic.mean_wait` (``kimura`` by default).
    arrival_rate_per_s, num_gpus, prefill_gpus, decode_gpus : array_like, optional
        Override the workload's rate and the cluster's GPU counts with arrays (numpy or
        xarray) that broadcast together: one call prices a whole grid.
    wait_law : {"residual", "gamma", "exponential"}
        Law of each wait given that it is positive, always with the method's mean: the
        shape of a geometric sum of the least of ``c ** (1/4)`` residual services
        (:mod:`analytic.residual`; the default, exact for M/G/1), a gamma with the
        squared coefficient of variation of :func:`analytic.conditional_wait_scv`, or
        an exponential (exact for M/M/c only).
    linking : {"timescale", "qna", "poisson"}
        Arrival variability of the decode pool: :func:`analytic.linked_arrival_scv`
        (default), QNA's departure SCV (:func:`analytic.departure_scv`), or 1.

    Returns
    -------
    TTFTEstimate
        ``mean_ttft_s``, ``p50_ttft_s``, ``p90_ttft_s``, ``p99_ttft_s``, ``quantile(q)``,
        per-pool mean waits, delay probabilities and utilisation, ``stable``,
        ``to_xarray()``.

    Examples
    --------
    >>> import spec
    >>> cfg = spec.default_config()
    >>> est = estimate(cfg.workload, cfg.cluster_mono)
    >>> round(est.mean_ttft_s, 3), est.p99_ttft_s > est.p50_ttft_s
    (0.078, True)
    """
    check_method(method)
    _check.choice("wait_law", wait_law, WAIT_LAWS)
    _check.choice("linking", linking, LINKINGS)
    mono = isinstance(cluster, MonolithicCluster)
    if not mono and not isinstance(cluster, DisaggregatedCluster):
        raise ValueError(f"cluster = {cluster!r}: must be a MonolithicCluster or "
                         "DisaggregatedCluster")
    if mono and (prefill_gpus is not None or decode_gpus is not None):
        raise ValueError("prefill_gpus / decode_gpus: only for a DisaggregatedCluster")
    if not mono and num_gpus is not None:
        raise ValueError("num_gpus: only for a MonolithicCluster (use prefill_gpus, "
                         "decode_gpus)")
    values = {"rate": workload.arrival_rate_per_s if arrival_rate_per_s is None
              else arrival_rate_per_s}
    if mono:
        values["c"] = cluster.num_gpus if num_gpus is None else num_gpus
    else:
        values["c1"] = cluster.prefill_gpus if prefill_gpus is None else prefill_gpus
        values["c2"] = cluster.decode_gpus if decode_gpus is None else decode_gpus
    arrays, dims, coords = _as_arrays(values)
    lam = queues._arr("arrival_rate_per_s", arrays["rate"], low=0.0, low_open=True)

    p_dist, o_dist = workload.prompt_tokens, workload.output_tokens
    (ep, vp), (eo, vo) = _moments(p_dist), _moments(o_dist)
    rp, rd = cluster.prefill_tokens_per_s, cluster.decode_tokens_per_s
    kappa = 0.0 if mono else cluster.kv_transfer_s_per_token
    first = 1.0 / rd
    x_scale = 1.0 / rp + kappa  # X = x_scale * P + first
    p_nodes, p_weights = _nodes(p_dist)
    nodes = x_scale * p_nodes + first

    def x_cdf(t):
        return np.asarray(p_dist.cdf((t - first) / x_scale))

    def x_quantile(q):
        return x_scale * _token_quantile(p_dist, q) + first

    gamma = wait_law == "gamma"
    exact = None
    shapes = None
    if mono:
        c = queues._arr("num_gpus", arrays["c"], low=1.0, whole=True)
        es = ep / rp + eo / rd
        cs2 = (vp / rp**2 + vo / rd**2) / es**2
        w, pw = queues.wait_and_delay(lam, es, cs2, c, method=method)
        util = {"gpu": lam * es / c}
        stable = util["gpu"] < 1.0
        mean_ttft = np.where(stable, w + ep * x_scale + first, np.inf)
        waits, probs = {"gpu": w}, {"gpu": pw}
        a, m1 = pw, _conditional_mean(pw, w)
        s1 = queues.conditional_wait_scv(np.minimum(util["gpu"], 1.0),
                                         _service_skew((p_dist, rp), (o_dist, rd)), c) \
            if gamma else np.ones_like(a)
        b, m2, s2 = np.zeros_like(a), np.ones_like(a), np.ones_like(a)
        if wait_law == "residual":
            shapes = _Shapes.of(np.shape(a), (((p_dist, rp), (o_dist, rd)), util["gpu"], c,
                                              stable & (a > 0)))
        ca2_dec = None
        if vp == 0.0 and vo == 0.0:  # M/D/c: the exact waiting-time law
            exact = _exact_mdc(lam, es, c, stable, ep * x_scale + first, wait_law)
    else:
        c1 = queues._arr("prefill_gpus", arrays["c1"], low=1.0, whole=True)
        c2 = queues._arr("decode_gpus", arrays["c2"], low=1.0, whole=True)
        es1, es2 = ep / rp, eo / rd
        cs2_1 = vp / ep**2
        cs2_2 = vo / eo**2
        w1, p1 = queues.wait_and_delay(lam, es1, cs2_1, c1, method=method)
        if linking == "timescale":
            ca2_dec = np.asarray(queues.linked_arrival_scv(lam, es1, cs2_1, c1, es2, cs2_2,
                                                           c2))
        elif linking == "qna":
            ca2_dec = np.asarray(queues.departure_scv(lam, es1, cs2_1, c1))
        else:
            ca2_dec = np.ones_like(lam)
        ca2_ok = np.where(np.isfinite(ca2_dec), ca2_dec, 1.0)
        w2, p2 = queues.wait_and_delay(lam, es2, cs2_2, c2, method=method,
                                       arrival_scv=ca2_ok)
        util = {"prefill": lam * es1 / c1, "decode": lam * es2 / c2}
        stable = (util["prefill"] < 1.0) & (util["decode"] < 1.0)
        mean_ttft = np.where(stable, w1 + ep * x_scale + w2 + first, np.inf)
        waits, probs = {"prefill": w1, "decode": np.where(stable, w2, np.inf)}, \
            {"prefill": p1, "decode": p2}
        a, m1, b, m2 = p1, _conditional_mean(p1, w1), p2, _conditional_mean(p2, w2)
        if wait_law == "residual":
            shape = np.broadcast_shapes(np.shape(a), np.shape(b))
            shapes = _Shapes.of(shape,
                                (((p_dist, 1.0),), util["prefill"], c1, stable & (a > 0)),
                                (((o_dist, 1.0),), util["decode"], c2, stable & (b > 0)))
        if gamma:
            s1 = queues.conditional_wait_scv(np.minimum(util["prefill"], 1.0),
                                             _service_skew((p_dist, 1.0)), c1)
            s2 = queues.conditional_wait_scv(np.minimum(util["decode"], 1.0),
                                             _service_skew((o_dist, 1.0)), c2)
        else:
            s1, s2 = np.ones_like(a), np.ones_like(b)
    law = {"nodes": nodes, "weights": p_weights, "x_cdf": x_cdf, "a": np.asarray(a, float),
           "m1": m1, "s1": np.asarray(s1, float), "b": np.asarray(b, float), "m2": m2,
           "s2": np.asarray(s2, float), "exact_sum": wait_law == "exponential",
           "shapes": shapes,
           "stable": np.asarray(stable), "exact": exact, "x_quantile": x_quantile}
    return TTFTEstimate(
        mode=cluster.mode, method=method, wait_law=wait_law, linking=linking,
        mean_ttft_s=_out(mean_ttft),
        mean_wait_s={k: _out(v) for k, v in waits.items()},
        delay_probability={k: _out(v) for k, v in probs.items()},
        utilisation={k: _out(v) for k, v in util.items()}, stable=_out(stable),
        mean_prefill_s=ep / rp, mean_transfer_s=kappa * ep, first_token_s=first,
        decode_arrival_scv=None if ca2_dec is None else _out(ca2_dec),
        dims=dims, coords=coords, _law=law)


def _conditional_mean(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean wait of those who wait, ``E[W] / P(W > 0)`` (1 where nobody waits: unused)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((p > 0) & (w > 0) & np.isfinite(w), w / p, 1.0)


def _service_skew(*terms: tuple[TokenDist, float]) -> float:
    r"""``kappa = E[S^3] E[S] / E[S^2]^2`` of ``S = sum_i N_i / r_i`` for ``terms`` of
    ``(N_i's law, r_i)``, from the token laws' exact raw moments (the counts independent):
    central moments add,
    :math:`E[S^2] = \mathrm{Var} + m^2`, :math:`E[S^3] = \mu_3 + 3 m \mathrm{Var} + m^3`.
    """
    m = var = mu3 = 0.0
    for dist, r in terms:
        e1, e2, e3 = (dist.raw_moment(k) / r**k for k in (1, 2, 3))
        v = e2 - e1**2
        m, var, mu3 = m + e1, var + v, mu3 + e3 - 3 * e1 * e2 + 2 * e1**3
    s2 = var + m**2
    return (mu3 + 3 * m * var + m**3) * m / s2**2


def _exact_mdc(lam, es, c, stable, offset, wait_law):
    """Quantiles from the exact M/D/c law; ``nan`` where its chain is past the work bound
    (:class:`analytic.mdc.MDcTooLarge`, warned once by name: ``wait_law`` is used
    there)."""
    from .mdc import MDcTooLarge, mdc_wait, warn_fallback

    def quantile(q: float) -> np.ndarray:
        out = np.full(np.shape(lam), np.inf)
        errors = []
        for idx in np.ndindex(out.shape):
            if stable[idx]:
                try:
                    w = mdc_wait(float(lam[idx]), float(es), int(c[idx]))
                except MDcTooLarge as exc:
                    out[idx] = np.nan
                    errors.append(exc.point)
                    continue
                out[idx] = offset + w.quantile(q)
        warn_fallback("TTFT quantile: the exact M/D/c chain is too large", errors,
                      instead=f"the {wait_law} wait law")
        return out

    return quantile


def estimate_grid(workload: Workload, cluster: MonolithicCluster | DisaggregatedCluster,
                  method: str = DEFAULT_METHOD, **axes) -> TTFTEstimate:
    """:func:`estimate` over the outer product of 1-D axes, with named xarray dims.

    Examples
    --------
    >>> import numpy as np, spec
    >>> cfg = spec.default_config()
    >>> est = estimate_grid(cfg.workload, cfg.cluster_mono,
    ...                     arrival_rate_per_s=np.linspace(1, 8, 8), num_gpus=[4, 8])
    >>> est.to_xarray().mean_ttft_s.dims
    ('arrival_rate_per_s', 'num_gpus')
    """
    import xarray as xr

    das = {k: xr.DataArray(np.asarray(v), dims=(k,), coords={k: np.asarray(v)})
           for k, v in axes.items()}
    return estimate(workload, cluster, method, **das)


def zero_load_ttft_s(workload: Workload,
                     cluster: MonolithicCluster | DisaggregatedCluster) -> float:
    """TTFT with no queueing: ``E[P] (1/r_p + kappa) + 1/r_d`` (a floor for every point)."""
    kappa = 0.0 if isinstance(cluster, MonolithicCluster) else cluster.kv_transfer_s_per_token
    ep = _moments(workload.prompt_tokens)[0]
    return ep * (1.0 / cluster.prefill_tokens_per_s + kappa) + 1.0 / cluster.decode_tokens_per_s


__all__ = ["TTFTEstimate", "estimate", "estimate_grid", "quantile_key", "zero_load_ttft_s"]
