"""The laws behind the batched forms' percentiles and SLO shares: a TTFT law (the
request's own prompt exactly, the rest a gamma law) and a TPOT law (the decode step plus
i.i.d. per-token gaps of prefill work), shared by the colocated and disaggregated forms.

A request's TTFT is ``T = W + g(L)``: ``g`` what its own prompt costs it, ``W`` the rest
(the wait, the other prompts of its batch), independent of ``L``, a gamma law of the
form's mean and variance (:class:`TTFTLaw`). A request of ``O >= 2`` tokens has
``TPOT = base + X / (O - 1)``: ``base`` the decode step and ``X`` the sum of ``O - 1``
i.i.d. gaps of other work between its decode steps (:class:`GapLaw`), each none with
probability ``p_zero``; ``X`` is then none with probability ``p_zero^(O-1)`` and
otherwise gamma of its exact mean and variance (:func:`tpot_share`). Numpy and scipy
only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, special

from spec import TokenDist

#: The shares of requests meeting an SLO (``slo_attainment_ttft`` ...): the simulation's
#: keys (:mod:`simulation.batched_metrics`).
SLO_KEYS: tuple[str, ...] = ("slo_attainment_ttft", "slo_attainment_tpot", "slo_attainment")
#: The TTFT percentiles the batched forms give (``p50_ttft_s`` ...).
TTFT_PERCENTILES: tuple[float, ...] = (0.5, 0.9, 0.99)


def gamma_cdf(x, mean, variance) -> np.ndarray:
    """``P(Y <= x)`` of a gamma law of ``mean`` and ``variance`` (shape ``mean^2 / var``,
    scale ``var / mean``), broadcast; a point mass at ``mean`` where either is not
    positive."""
    x, mean, variance = np.broadcast_arrays(*(np.asarray(a, dtype=float)
                                              for a in (x, mean, variance)))
    gamma = (variance > 0.0) & (mean > 0.0)
    shape = np.where(gamma, mean * mean / np.where(gamma, variance, 1.0), 1.0)
    rate = np.where(gamma, mean / np.where(gamma, variance, 1.0), 1.0)
    return np.where(gamma, special.gammainc(shape, np.maximum(x, 0.0) * rate),
                    (x >= mean).astype(float))


@dataclass(frozen=True)
class TTFTLaw:
    """A TTFT law ``T = W + g(L)``: the own prompt's cost ``g`` at each prompt length,
    their probabilities ``w``, and the gamma part ``W``'s mean and variance."""

    g: np.ndarray
    w: np.ndarray
    mean_w: float
    var_w: float

    def cdf(self, t) -> np.ndarray:
        """``P(T <= t)`` for each ``t``: ``sum_l P(L = l) F_W(t - g(l))``."""
        x = np.asarray(t, dtype=float)[:, None] - self.g[None, :]
        return gamma_cdf(x, self.mean_w, self.var_w) @ self.w

    def quantiles(self, probs) -> np.ndarray:
        """The ``probs`` quantiles (s): each the root of ``cdf(t) = p`` by Brent's method
        (to 1e-13 of it) between the least own cost and 60 standard deviations of ``W``
        past the largest."""
        lo = float(self.g.min())
        hi = float(self.g.max()) + max(self.mean_w, 0.0) + 60.0 * math.sqrt(self.var_w) + 1e-9
        return np.array([optimize.brentq(lambda t, p=p: float(self.cdf([t])[0]) - p, lo, hi,
                                         xtol=1e-15, rtol=1e-13)
                         for p in np.atleast_1d(np.asarray(probs, dtype=float))])

    def percentiles(self) -> dict[str, float]:
        """``p50_ttft_s``, ``p90_ttft_s``, ``p99_ttft_s`` (:data:`TTFT_PERCENTILES`)."""
        values = self.quantiles(TTFT_PERCENTILES)
        return {f"p{round(q * 100)}_ttft_s": float(v)
                for q, v in zip(TTFT_PERCENTILES, values, strict=True)}


@dataclass(frozen=True)
class GapLaw:
    """A decode's time per token: the decode step ``base_s`` plus a gap ``G`` of other
    work before its next step, i.i.d. from token to token: ``P(G = 0) = p_zero``,
    ``E[G] = mean_s``, ``E[G^2] = m2_s2``."""

    base_s: float
    p_zero: float
    mean_s: float
    m2_s2: float


#: Output lengths are grouped into this many log-spaced bins for the TPOT share (a
#: share is smooth in the length; the exact law has up to millions of lengths).
OUTPUT_BINS = 256


@lru_cache(maxsize=64)
def output_bins(output: TokenDist, bins: int = OUTPUT_BINS) -> tuple[np.ndarray, np.ndarray]:
    """The output law grouped for :func:`tpot_share`: each length with its probability
    where there are at most ``bins`` lengths; else ``bins`` log-spaced groups of lengths
    of two or more tokens, each at its probability-weighted mean length (one-token
    requests kept apart: they have no TPOT)."""
    values, probs = output.pmf()
    probs = probs / probs.sum()
    values = values.astype(float)
    if len(values) <= bins:
        return values, probs
    one = float(probs[values == 1.0].sum())
    many = values >= 2.0
    v, w = values[many], probs[many]
    edges = np.geomspace(v[0], v[-1] + 1.0, bins + 1)
    group = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, bins - 1)
    mass = np.bincount(group, weights=w, minlength=bins)
    mean = np.bincount(group, weights=w * v, minlength=bins)
    keep = mass > 0.0
    out_v = np.concatenate(([1.0], mean[keep] / mass[keep]))
    out_w = np.concatenate(([one], mass[keep]))
    return out_v, out_w


def _seen_batches(batch_pmf, step_s) -> tuple[np.ndarray, np.ndarray, float]:
    """The batch sizes a request sees (size-biased: a step of ``n`` is seen by ``n``),
    their weights over the law's support (down to 1e-10) and the pool's mean batch."""
    size = min(len(batch_pmf), len(step_s))
    n = np.arange(size, dtype=float)
    pmf = np.asarray(batch_pmf, dtype=float)[:size]
    seen = n * pmf
    if seen.sum() <= 0.0:  # an empty pool: a request decodes alone
        seen = np.zeros(size)
        seen[min(1, size - 1)] = 1.0
    seen = seen / seen.sum()
    keep = seen > 1e-10
    return np.nonzero(keep)[0], seen[keep] / seen[keep].sum(), float(n @ pmf)


def tpot_share(bound_s: float, gap: GapLaw, output: TokenDist,
               batch_pmf: np.ndarray | None = None, step_s: np.ndarray | None = None
               ) -> float:
    r"""The share of requests whose TPOT is at most ``bound_s``: those of one token
    (no TPOT, met as the simulation counts them) and, for each ``O = o >= 2``,
    :math:`P(X_n \le (B - \mathrm{base})\,n)`, :math:`n = o - 1`, with
    :math:`X_n = G_1 + \dots + G_n`: none with probability :math:`p_0^n`, else gamma of
    mean :math:`n E[G] / (1 - p_0^n)` and second moment
    :math:`(n \mathrm{Var}\,G + n^2 E[G]^2) / (1 - p_0^n)` (the sum's exact two moments,
    conditioned on some gap), over the output law grouped by :func:`output_bins`. Given
    the decode batch's law ``batch_pmf[k]`` and the
    decode step ``step_s[k]``, a request sees one batch size its whole life (the batch
    moves slowly), size-biased, and its base is the gap law's moved by
    :math:`\tau(n) - \tau(E[N])`. This toolkit's construction; measured against the
    simulation in ``docs/batched.md``."""
    if batch_pmf is None or step_s is None:
        bases, weights = np.array([gap.base_s]), np.ones(1)
    else:
        at, weights, mean = _seen_batches(batch_pmf, step_s)
        steps = np.asarray(step_s, dtype=float)
        bases = gap.base_s + steps[at] - float(np.interp(mean, np.arange(len(steps)), steps))
    values, probs = output_bins(output)
    n = values - 1.0
    many = n >= 1.0
    n = n[many]
    none = gap.p_zero ** n
    mean_x, var_g = n * gap.mean_s, n * max(gap.m2_s2 - gap.mean_s ** 2, 0.0)
    some = 1.0 - none
    safe = np.where(some > 0.0, some, 1.0)
    c_mean = np.where(some > 0.0, mean_x / safe, 0.0)
    c_var = np.maximum(np.where(some > 0.0, (var_g + mean_x * mean_x) / safe, 0.0)
                       - c_mean * c_mean, 0.0)
    room = (bound_s - bases[:, None]) * n[None, :]  # batches x output lengths
    met = np.where(room >= 0.0, none + some * gamma_cdf(room, c_mean, c_var), 0.0)
    share = np.ones(len(values))  # one-token requests
    share[many] = weights @ met
    return float(share @ probs)


def batch_tpot_share(bound_s: float, batch_pmf: np.ndarray, step_s: np.ndarray,
                     output: TokenDist, shift_s: float = 0.0) -> float:
    r"""The share of requests whose TPOT is at most ``bound_s`` in a decode pool whose
    batch ``N`` has the stationary law ``batch_pmf[k] = P(N = k)`` and whose step takes
    ``step_s[k]`` at batch ``k``: a request is taken to see one batch size its whole life
    (the batch moves slowly, a request staying for all its tokens), drawn size-biased (a
    step of ``n`` is seen by ``n`` requests),
    :math:`\sum_n n \pi_n [\tau(n) + s/(O-1) \le B] / \sum_n n\pi_n`; ``shift_s``
    (``s``) is time added once to a request's decode life (the transfer and boundary wait
    inside its first gap with ``first_token: prefill``), spread over its ``O - 1`` gaps by
    ``output``'s law (one-token requests meet the bound, as the simulation counts them).
    This toolkit's construction."""
    at, seen, _ = _seen_batches(batch_pmf, step_s)
    steps = np.asarray(step_s, dtype=float)[at]
    values, probs = output_bins(output)
    gaps = values - 1.0
    ok = np.ones(len(values))
    many = gaps >= 1.0
    ok[many] = ((steps[None, :] + shift_s / gaps[many, None]) <= bound_s) @ seen
    return float(ok @ probs)
