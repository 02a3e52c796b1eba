"""Closed forms for batched serving (``../shared/ANALYTIC_NOTES.md``, "Batched serving").

Notation: arrival rate ``lam`` per instance; a prefill-only step of prompts ``l_i`` takes
``a + sum beta(l_i)`` with ``beta(L) = b L + c L^2`` (DistServe's fitted form; the seed's
``rates`` profile is ``a = c = 0``, ``b = 1 / r_p``); ``rho = lam E[beta]``.

Item 1, a prefill instance that batches everything waiting (DistServe's prefill worker):

- :func:`batch_prefill_chain_ttft`: exact mean TTFT for fixed prompts, from the embedded
  Markov chain on batch sizes;
- :func:`batch_prefill_ttft`: a closed form for random prompts (heavy-traffic);
- :func:`batch_prefill_capacity`: the stability limit ``lam E[beta] < 1`` (batching
  amortises ``a``: the capacity is ``1 / E[beta]``, not ``1 / (a + E[beta])``).

TTFT here is the end of the request's prefill step (``first_token: prefill``). Imports
``spec`` only, never ``simulation``; unstable points give ``inf``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import signal, stats

from spec import Profile, TokenDist

from .batched_slo import SLO_KEYS, TTFT_PERCENTILES, GapLaw, TTFTLaw, tpot_share
from .queues import ArrayLike, _arr, _out

#: The exact chain is solved densely on at most this many batch sizes (a 4000 x 4000
#: matrix is 128 MB); nearer saturation it refuses and names the closed form to use.
CHAIN_MAX_STATES = 4000
#: Stationary probability that the next batch lies beyond the chain's last state.
CHAIN_TAIL = 1e-12
#: A colocated cap (KV cache, max_num_seqs) binds where it lowers the stability limit by
#: more than this share of compute's (see :func:`batched_estimate`).
CAP_MARGIN = 0.01
#: A chunked instance's budget in the form that asks what compute alone allows.
UNBOUNDED_BUDGET = 10**9


def prefill_affine(profile: Profile) -> tuple[float, float, float]:
    """``(a, b, c)`` of a profile whose prefill-only step is ``a + sum (b l + c l^2)``:
    the ``distserve`` form, ``rates`` (``0, 1 / r_p, 0``), or ``roofline`` taken
    compute-bound: ``(overhead + flop_s_per_sequence, flop_s_per_token + flop_s_per_pair / 2
    + comm_s_per_token, flop_s_per_pair / 2)`` (causal pairs ``(l^2 + l) / 2``; the LM head
    counted once a step, exact for one prompt a step). The roofline's memory floor
    (weights read once a step) is left out: a step of fewer than ``mem_s_fixed /
    (flop_s_per_token - mem_s_per_kv_token)`` prompt tokens (132 for Llama-3.1-8B on an
    A100) is slower than this says.

    Raises
    ------
    ValueError
        For the ``mixed`` form, whose prefill steps are not affine in the batch (a floor
        on the linear layers' time).
    """
    c = profile.coeffs
    if profile.form == "distserve":
        return c[0], c[1], c[2]
    if profile.form == "rates":
        return 0.0, c[0], 0.0
    if profile.form == "roofline":
        return c[0] + c[2], c[1] + 0.5 * c[3] + c[6], 0.5 * c[3]
    raise ValueError(f"profile {profile.name!r}: form {profile.form!r} has no affine "
                     "prefill step a + sum(b l + c l^2); the batched prefill forms need "
                     "the distserve, rates or roofline form")


def prefill_cost_moments(b: float, c: float, prompt: TokenDist) -> tuple[float, float]:
    """``E[beta]`` and ``E[beta^2]`` of ``beta(L) = b L + c L^2`` under the exact prompt law:
    ``E[beta] = b E[L] + c E[L^2]``, ``E[beta^2] = b^2 E[L^2] + 2 b c E[L^3] + c^2 E[L^4]``."""
    m = [prompt.raw_moment(k) for k in (1, 2, 3, 4)]
    return b * m[0] + c * m[1], b * b * m[1] + 2 * b * c * m[2] + c * c * m[3]


def prefill_costs(b: float, c: float, prompt: TokenDist
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(L, beta(L), P(L))`` over the prompt law's support, ``beta(L) = b L + c L^2``:
    its exact pmf, normalised (a ``max_value`` cut's atom included)."""
    values, probs = prompt.pmf()
    v = values.astype(float)
    return v, b * v + c * v * v, probs / probs.sum()


def prefill_cost_central3(b: float, c: float, prompt: TokenDist) -> float:
    """``E[(beta - E[beta])^3]`` of ``beta(L) = b L + c L^2`` under the exact prompt law
    (:func:`prefill_costs`)."""
    _, beta, w = prefill_costs(b, c, prompt)
    return float(((beta - beta @ w) ** 3) @ w)


def batch_prefill_ttft_moment2(arrival_rate: float, intercept_s: float, mean_cost_s: float,
                               cost_variance_s2: float, cost_central3_s3: float,
                               batch_law: np.ndarray, cost_laplace: float) -> float:
    r"""``E[T^2]`` of the TTFT (to the end of the prefill) of an instance that batches
    everything waiting, over the chain's stationary ``batch_law`` (from
    :func:`batch_prefill_random_ttft`).

    A rider of a batch of ``x`` prompts (time :math:`S = S_x`) arrives uniformly in it,
    so it waits :math:`R \sim U(0, S)`, then rides the next batch of its
    :math:`m \sim \mathrm{Poisson}(\lambda S)` riders, :math:`N = a + \sum_{i \le m}
    \beta_i`, independent of ``R`` given ``S``. Summed over the riders,

    .. math:: E[\sum_r T_r^2 \mid S] = E[m] S^2/3 + S\,(a E[m] + E[\beta] E[m^2])
              + a^2 E[m] + 2 a E[\beta] E[m^2] + E[\beta]^2 E[m^3] + \mathrm{Var}\,\beta\,E[m^2]

    with the Poisson moments :math:`E[m^k \mid S]`, averaged over :math:`S_x` by its
    exact first three moments (:math:`a + x E[\beta]`, variance :math:`x \mathrm{Var}\,
    \beta`, third central moment :math:`x \mu_3`); a batch after which nobody came
    (probability :math:`p_x`, as in the mean) is followed by a lone arrival of
    :math:`E[T^2] = (a + E[\beta])^2 + \mathrm{Var}\,\beta`. Divided by the riders a
    batch (the mean's denominator). This toolkit's derivation; exact for fixed prompts
    up to the chain's truncation, tested against a simulation of such an instance.
    """
    lam, a, e1, var, mu3 = (float(arrival_rate), float(intercept_s), float(mean_cost_s),
                            float(cost_variance_s2), float(cost_central3_s3))
    pi = np.asarray(batch_law, dtype=float)
    if pi.size == 0:
        return math.inf
    x = np.arange(1, pi.size + 1, dtype=float)
    sums, riders = _rider_sums(lam, a, e1, var, *_batch_moments(a, e1, var, mu3, x))
    idle = np.exp(-lam * a) * float(cost_laplace) ** x
    num = pi @ (sums + idle * ((a + e1) ** 2 + var))
    den = pi @ (riders + idle)
    return float(num / den)


def _batch_moments(a: float, e1: float, var: float, mu3: float, x: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``E[S_x^k]``, ``k = 1, 2, 3``, of a prefill step of ``x`` prompts,
    ``S_x = a + beta_1 + .. + beta_x``: mean ``a + x e1``, variance ``x var``, third
    central moment ``x mu3`` (cumulants add)."""
    s1 = a + x * e1
    return s1, s1 * s1 + x * var, s1 ** 3 + 3.0 * s1 * x * var + x * mu3


def _rider_sums(lam: float, a: float, e1: float, var: float, s1, s2, s3
                ) -> tuple[np.ndarray, np.ndarray]:
    r"""``E[sum_r T_r^2]`` and ``E[m]`` over the riders of the prefill step that follows a
    step ``S`` of moments ``s1, s2, s3`` (:func:`batch_prefill_ttft_moment2`): with
    :math:`m \mid S \sim \mathrm{Poisson}(\lambda S)`, :math:`E[m] = \lambda S`,
    :math:`E[m^2] = \lambda S + (\lambda S)^2`,
    :math:`E[m^3] = \lambda S + 3(\lambda S)^2 + (\lambda S)^3`."""
    em_s2 = lam * s3 / 3.0  # E[m] S^2 / 3
    s_terms = a * lam * s2 + e1 * (lam * s2 + lam * lam * s3)  # S (a E[m] + e1 E[m^2])
    em1, em2 = lam * s1, lam * s1 + lam * lam * s2
    em3 = lam * s1 + 3.0 * lam * lam * s2 + lam ** 3 * s3
    n_terms = a * a * em1 + 2.0 * a * e1 * em2 + e1 * e1 * em3 + var * em2
    return em_s2 + s_terms + n_terms, em1


def batch_prefill_capacity(mean_cost_s: ArrayLike) -> float | np.ndarray:
    """The largest stable arrival rate of a prefill instance that batches everything
    waiting: ``1 / E[beta]`` (req/s)."""
    return _out(1.0 / _arr("mean_cost_s", mean_cost_s, low_open=True))


def prefill_cost_laplace(lam: float, b: float, c: float, prompt: TokenDist) -> float:
    """``E[exp(-lam beta(L))]``, ``beta(L) = b L + c L^2``, from the exact prompt law
    (:func:`prefill_costs`)."""
    _, beta, w = prefill_costs(b, c, prompt)
    return float(np.exp(-lam * beta) @ w)


def _arrivals_pmf(lam: float, a: float, e1: float, var: float, x: np.ndarray,
                  upto: int) -> np.ndarray:
    """``P(A = k | x)``, ``k = 0 .. upto``: Poisson arrivals at ``lam`` during a batch of
    ``x`` prompts, ``S_x = a + G_x``. Fixed costs (``var = 0``): ``A ~ Poisson(lam S_x)``.
    Random costs: ``G_x`` gamma of mean ``x e1`` and variance ``x var`` (the sum of ``x``
    i.i.d. costs, moment-matched), so ``A`` is ``Poisson(lam a)`` plus the negative
    binomial ``NB(x e1^2 / var, 1 / (1 + lam var / e1))``."""
    k = np.arange(upto + 1)
    if var <= 0.0:
        return stats.poisson.pmf(k[None, :], (lam * (a + x * e1))[:, None])
    theta = var / e1
    nb = stats.nbinom.pmf(k[None, :], (x * e1 / theta)[:, None], 1.0 / (1.0 + lam * theta))
    if lam * a <= 0.0:
        return nb
    pois = stats.poisson.pmf(k, lam * a)
    return np.maximum(signal.fftconvolve(nb, pois[None, :], axes=1)[:, :upto + 1], 0.0)


def _step_chain(lam: float, a: float, e1: float, var: float, laplace: float,
                decode_s: float, decoding: float, max_states: int
                ) -> tuple[float, np.ndarray, np.ndarray] | None:
    r"""The embedded chain on an instance's steps, shared by the batch-everything prefill
    instance and the colocated ``prefill_priority`` one: state :math:`x \ge 1` a prefill
    step of :math:`x` prompts, :math:`S_x = a + G_x` (:func:`_arrivals_pmf`); after a step
    of length :math:`S`, the :math:`A \sim \mathrm{Poisson}(\lambda S)` arrivals are the
    next step's batch; if none came, state 0: a decode step of ``decode_s`` with
    probability :math:`q`, else an idle wait for the next arrival, which then prefills
    alone. :math:`q` makes idle time the share ``1 - decoding`` :math:`d` of the time
    between prefills, :math:`(1-q)/\lambda = (1-d)((1-q)/\lambda + q\tau_d)`, so
    :math:`q = d / (d + (1-d)\lambda\tau_d)` (``decoding = 0``: no decode step, the
    prefill instance). With :math:`\pi` its stationary law (states doubled from 64 until
    the mass past the last is under :data:`CHAIN_TAIL`),
    :math:`E[T] = \sum_x \pi_x [\lambda E[S_x^2]/2 + a\lambda E[S_x] + e_1(\lambda E[S_x] +
    \lambda^2 E[S_x^2])] / \sum_x \pi_x \lambda E[S_x]`: each arrival's residual of its
    step (none in an idle wait), then the next prefill step of all that step's arrivals.

    Returns
    -------
    ttft_s, pi, mean_step_s, transitions : float, ndarray, ndarray, ndarray
        ``pi[x]`` and ``E[S_x]`` for ``x = 0 ..`` (state 0 the decode step or idle wait),
        and the chain's transition matrix; None where more than ``max_states`` batch
        sizes would be needed.
    """
    q = _decode_share(lam, decode_s, decoding)
    states = 64
    while True:
        x = np.arange(0, states + 1, dtype=float)
        mean_s = np.where(x > 0, a + x * e1, q * decode_s + (1.0 - q) / lam)
        second_s = np.where(x > 0, (a + x * e1) ** 2 + x * var, q * decode_s * decode_s)
        idle = np.exp(-lam * a) * laplace ** x[1:]  # P(A = 0 | x), exact
        pmf = np.empty((states + 1, states + 1))
        pmf[1:] = _arrivals_pmf(lam, a, e1, var, x[1:], states)
        pmf[0] = q * stats.poisson.pmf(np.arange(states + 1), lam * decode_s)
        pmf[0, 1] += 1.0 - q  # the idle wait ends with one arrival
        beyond = np.maximum(1.0 - pmf.sum(axis=1), 0.0)  # P(A > states | x)
        # P(A = 0 | x) exact, the rest of the law scaled to it (unchanged when fixed)
        P = pmf.copy()
        rest = 1.0 - pmf[1:, 0]
        P[1:, 1:] *= np.divide(1.0 - idle, rest, out=np.zeros_like(rest),
                               where=rest > 0.0)[:, None]
        P[1:, 0] = idle
        total = P.sum(axis=1)  # rows truncated at the last state
        P[total <= 0.0, -1] = 1.0  # all its mass past the last state (beyond says so)
        P /= np.where(total > 0.0, total, 1.0)[:, None]
        # stationary law: pi (P - I) = 0, sum pi = 1 (last equation replaced)
        A = P.T - np.eye(states + 1)
        A[-1, :] = 1.0
        rhs = np.zeros(states + 1)
        rhs[-1] = 1.0
        pi = np.linalg.solve(A, rhs)
        # the truncation matters only as much as the chain goes past its last state
        if float(pi @ beyond) <= CHAIN_TAIL:
            break
        if states >= max_states:
            return None
        states = min(2 * states, max_states)
    m = lam * mean_s
    num = pi @ (lam * second_s / 2.0 + a * m + e1 * (m + lam * lam * second_s))
    return float(num / (pi @ m)), pi, mean_s, P


def _chain(lam: float, a: float, e1: float, var: float, laplace: float
           ) -> tuple[float, np.ndarray]:
    """Mean TTFT of a batch-everything prefill instance and the chain's stationary law of
    batch sizes (``pi[x - 1]`` for ``x`` prompts); see :func:`batch_prefill_random_ttft`.
    ``laplace`` is ``E[exp(-lam beta)]``. :func:`_step_chain` without decode steps (an
    empty batch is followed by an idle wait); its law of batches is the chain's on
    ``x >= 1`` (the chain watched only there)."""
    if lam * e1 >= 1.0:
        return math.inf, np.zeros(0)
    if lam == 0.0:
        return a + e1, np.ones(1)
    solved = _step_chain(lam, a, e1, var, laplace, 0.0, 0.0, CHAIN_MAX_STATES)
    if solved is None:
        raise ValueError(
            f"arrival_rate = {lam!r}: the exact chain needs more than "
            f"{CHAIN_MAX_STATES} batch sizes at load lam E[beta] = {lam * e1:.4g}; "
            "use batch_prefill_ttft (the closed form) this close to saturation")
    ttft, pi = solved[:2]
    return ttft, pi[1:] / pi[1:].sum()


def _chain_one(lam: float, a: float, beta: float) -> float:
    return _chain(lam, a, beta, 0.0, math.exp(-lam * beta))[0]


def batch_prefill_random_ttft(arrival_rate: float, intercept_s: float, mean_cost_s: float,
                              cost_variance_s2: float, cost_laplace: float
                              ) -> tuple[float, np.ndarray]:
    r"""Mean TTFT (to the end of the prefill) of an instance that batches everything
    waiting, i.i.d. prompt costs ``beta`` of mean ``E[beta]`` and variance ``Var beta``,
    Poisson arrivals; and the stationary law of its batch sizes.

    The chain of :func:`batch_prefill_chain_ttft` with a random batch time
    :math:`S_x = a + \beta_1 + \dots + \beta_x`: the followers of a batch of ``x`` wait
    :math:`\lambda E[S_x^2]/2` in all, and a batch of ``A`` riders costs them
    :math:`E[A (a + \sum_{i \le A} \beta_i)] = a E[A] + E[\beta] E[A^2]`, so

    .. math:: E[T] = \frac{\sum_x \pi_x [\lambda E[S_x^2]/2 + a\lambda E[S_x]
              + E[\beta](\lambda E[S_x] + \lambda^2 E[S_x^2]) + p_x (a + E[\beta])]}
              {\sum_x \pi_x [\lambda E[S_x] + p_x]}

    with :math:`E[S_x^2] = (a + x E[\beta])^2 + x \mathrm{Var}\,\beta` and
    :math:`p_x = P(A = 0 \mid x) = e^{-\lambda a} E[e^{-\lambda\beta}]^x` (exact). Only the
    transition law uses an approximation (:func:`_arrivals_pmf`: ``S_x - a`` gamma); for
    fixed prompts (``Var beta = 0``) this is the exact chain. This toolkit's derivation
    (ANALYTIC_NOTES batched item 1 for the fixed case). ``inf`` where
    ``lam E[beta] >= 1``.

    Returns
    -------
    ttft_s : float
    batch_law : ndarray
        ``batch_law[x - 1]``: the stationary probability that a batch holds ``x`` prompts.
    """
    lam = float(_arr("arrival_rate", arrival_rate))
    a = float(_arr("intercept_s", intercept_s))
    e1 = float(_arr("mean_cost_s", mean_cost_s, low_open=True))
    var = float(_arr("cost_variance_s2", cost_variance_s2))
    lt = float(_arr("cost_laplace", cost_laplace, low_open=True))
    return _chain(lam, a, e1, var, lt)


def batch_prefill_chain_ttft(arrival_rate: ArrayLike, intercept_s: ArrayLike,
                             cost_s: ArrayLike) -> float | np.ndarray:
    r"""Exact mean TTFT of a prefill instance that batches everything waiting, fixed
    prompts (each costs ``beta``), Poisson arrivals.

    After a batch of ``x`` (duration :math:`S_x = a + x\beta`) the next holds the
    :math:`A \sim \mathrm{Poisson}(\lambda S_x)` arrivals during it, or one request
    after an idle period if :math:`A = 0`. With :math:`\pi` the stationary law of that
    chain (solved on as many batch sizes as keep the stationary probability of a batch
    beyond the last one below 1e-12):

    .. math:: E[T] = \frac{\sum_x \pi_x [\lambda S_x (S_x/2 + a + \beta (1 + \lambda S_x))
              + e^{-\lambda S_x} (a + \beta)]}{\sum_x \pi_x [\lambda S_x + e^{-\lambda S_x}]}

    (the followers of a batch wait its residual, then ``a + A beta``). Source:
    ANALYTIC_NOTES, batched item 1; checked against the batched simulation inside its
    99 % interval (tests/test_batched_chain.py). ``inf`` where ``lam beta >= 1``.

    Raises
    ------
    ValueError
        A bad argument, or a load so near saturation that the chain would need more than
        :data:`CHAIN_MAX_STATES` states (bounded work: use :func:`batch_prefill_ttft`).
    """
    lam = _arr("arrival_rate", arrival_rate)
    a = _arr("intercept_s", intercept_s)
    beta = _arr("cost_s", cost_s, low_open=True)
    lam, a, beta = np.broadcast_arrays(lam, a, beta)
    out = np.array([_chain_one(float(x), float(y), float(z))
                    for x, y, z in zip(lam.ravel(), a.ravel(), beta.ravel(), strict=True)])
    return _out(out.reshape(lam.shape))


def batch_prefill_ttft(arrival_rate: ArrayLike, intercept_s: ArrayLike,
                       mean_cost_s: ArrayLike, cost_second_moment_s2: ArrayLike
                       ) -> float | np.ndarray:
    r"""Mean TTFT of a prefill instance that batches everything waiting, i.i.d. prompts,
    Poisson arrivals: the heavy-traffic closed form

    .. math:: E[T] \approx a + E[\beta] + (\tfrac12 + \rho)
              \left(\frac{a}{1-\rho} + \frac{\lambda E[\beta^2]}{1-\rho^2}\right),
              \qquad \rho = \lambda E[\beta].

    Source: ANALYTIC_NOTES, batched item 1 (about +12 % at light load to -1 % near
    saturation against the exact chain for fixed prompts; the tests pin its error against
    the chain). ``inf`` where ``rho >= 1``.
    """
    lam = _arr("arrival_rate", arrival_rate)
    a = _arr("intercept_s", intercept_s)
    e1 = _arr("mean_cost_s", mean_cost_s, low_open=True)
    e2 = _arr("cost_second_moment_s2", cost_second_moment_s2, low_open=True)
    lam, a, e1, e2 = np.broadcast_arrays(lam, a, e1, e2)
    rho = lam * e1
    with np.errstate(divide="ignore", invalid="ignore"):
        t = a + e1 + (0.5 + rho) * (a / (1.0 - rho) + lam * e2 / (1.0 - rho * rho))
    return _out(np.where(rho < 1.0, t, np.inf))


# ----------------------------------------------------------------------------- item 2

def _decode_coeffs(profile: Profile, batch: float, context: float = 0.0,
                   mixed: bool = False) -> tuple[float, float, float]:
    """``(a_d, b_d, c_d)`` of a decode-only step ``a_d + b_d sum(ctx + 1) + c_d B`` at batch
    size ``batch`` of mean context ``context`` (DistServe's small-batch set below its
    threshold; for a roofline profile the branch, memory or compute, that is the slower
    at that batch: ``(overhead + mem_s_fixed, mem_s_per_kv_token, comm_s_per_token)`` or
    ``(overhead, flop_s_per_pair, flop_s_per_token + flop_s_per_sequence +
    comm_s_per_token)``). ``mixed``: the decodes of a step that also prefills, whose
    ``b_d``, ``c_d`` add to the prefill's (a roofline's compute branch: the prompt tokens
    make the step compute-bound)."""
    c = profile.coeffs
    if profile.form == "distserve":
        return (c[3], c[4], c[5]) if batch < c[9] else (c[6], c[7], c[8])
    if profile.form == "rates":
        return 0.0, 0.0, c[1]
    if profile.form == "roofline":
        compute = (c[0], c[3], c[1] + c[2] + c[6])
        n = max(batch, 1.0)
        memory_s = c[4] + c[5] * n * (context + 1.0)
        compute_s = (c[1] + c[2]) * n + c[3] * n * (context + 1.0)
        return compute if mixed or compute_s > memory_s else (c[0] + c[4], c[5], c[6])
    raise ValueError(f"profile {profile.name!r}: form {profile.form!r} has no affine "
                     "decode step; the batched forms need the distserve, rates or roofline "
                     "form")


def kv_tokens_in_use(arrival_rate: float, tpot_s: float, prompt: TokenDist,
                     output: TokenDist) -> float:
    """Mean KV tokens held (Little's law): a request holds ``P + j`` tokens through its
    ``j``-th of ``O - 1`` decodes, one TPOT each, so the lifetime demand is
    ``TPOT (P (O-1) + O (O-1)/2)`` token-seconds and the mean in use
    ``lam TPOT (E[P] (E[O]-1) + (E[O^2] - E[O]) / 2)`` (ANALYTIC_NOTES batched item 5,
    Nie, Si and Zhou, measured within about 10 % on vLLM v1). Against this toolkit's
    simulation (one prefill-priority OPT-13B instance, 1 to 4 req/s) it is 7 to 11 % low:
    half of it from the TPOT it is given, the rest from block rounding and the KV held
    during prefill, which it leaves out."""
    eo, eo2 = output.raw_moment(1), output.raw_moment(2)
    return arrival_rate * tpot_s * (prompt.raw_moment(1) * (eo - 1.0) + (eo2 - eo) / 2.0)


#: The colocated chain's largest prefill batch: beyond it a point is taken as unstable
#: (a step of more than 1,024 prompts; the chain's limit is the moment form's anyway).
COLOCATED_CHAIN_STATES = 1024


def _colocated_chain(lam: float, a: float, e1: float, var: float, laplace: float,
                     decode_s: float, decoding: float = 1.0) -> tuple[float, float]:
    r"""Mean TTFT and the time per decode step of a colocated ``prefill_priority``
    instance: :func:`_step_chain` with its decode steps of ``decode_s`` (``decoding``:
    the share of time between prefills some request is decoding); at ``decoding = 1`` a
    decode waits :math:`\sum_x \pi_x E[S_x] / \pi_0` per token. ``inf`` where the batches
    outgrow :data:`COLOCATED_CHAIN_STATES`."""
    solved = _step_chain(lam, a, e1, var, laplace, decode_s, decoding,
                         COLOCATED_CHAIN_STATES)
    if solved is None:
        return math.inf, math.inf
    ttft, pi, mean_s, _ = solved
    return ttft, float(pi @ mean_s / pi[0])


def decode_context(prompt: TokenDist, output: TokenDist) -> float:
    """The length-biased mean context of an active decode,
    ``E[(O-1)(P + (O-2)/2)] / E[O-1] = E[P] + (E[O^2] - 3E[O] + 2) / (2(E[O] - 1))`` (a
    request of ``O`` tokens decodes ``O - 1`` times, at contexts ``P .. P + O - 2``);
    ``E[P]`` where no request decodes."""
    e_l, eo, eo2 = prompt.raw_moment(1), output.raw_moment(1), output.raw_moment(2)
    return e_l + (eo2 - 3.0 * eo + 2.0) / (2.0 * (eo - 1.0)) if eo > 1 else e_l


def _prefill_priority_one(lam: float, prompt: TokenDist, output: TokenDist,
                          profile: Profile, chain: bool = True) -> tuple[float, float]:
    return _prefill_priority_solve(lam, prompt, output, profile, chain)[:2]


def _prefill_priority_solve(lam: float, prompt: TokenDist, output: TokenDist,
                            profile: Profile, chain: bool = True
                            ) -> tuple[float, float, float]:
    """Mean TTFT, TPOT and the decode step at the fixed point of
    :func:`colocated_prefill_priority` (one instance at ``lam``); ``inf`` where none."""
    a_p, b_p, c_p = prefill_affine(profile)
    e1, e2 = prefill_cost_moments(b_p, c_p, prompt)
    eo = output.raw_moment(1)
    if lam == 0.0:  # alone: decode j of O - 1 sums P + j, so TPOT = a + b (P + O/2) + c
        a_d, b_d, c_d = _decode_coeffs(profile, 1.0, prompt.raw_moment(1) + eo / 2.0 - 1.0)
        tpot = a_d + c_d + b_d * (prompt.raw_moment(1) + eo / 2.0)
        return a_p + e1, tpot, tpot
    ctx = decode_context(prompt, output)
    tokens = lam * (eo - 1.0)  # decode tokens per second

    def step(t: float) -> tuple[float, float, float, float]:
        """At TPOT ``t``: decode step, prefill batch mean, prefill time share, k_d."""
        a_d, b_d, c_d = _decode_coeffs(profile, tokens * t, ctx)
        k = b_d * (ctx + 1.0) + c_d
        tau = a_d + max(tokens * t, 1.0) * k
        mu = lam * tau
        nbar = mu / -math.expm1(-mu)  # prefill batch: zero-truncated Poisson(lam tau)
        return tau, nbar, lam * e1 + a_p * lam / nbar, k

    def residual(t: float) -> float:  # TPOT (1 - f_p) - tau: < 0 below the fixed point
        tau, _, f_p, _ = step(t)
        return -math.inf if f_p >= 1.0 else t * (1.0 - f_p) - tau

    # bracket by doubling, then bisect (the residual jumps where DistServe's decode
    # coefficients switch; the map contracts slowly near the knee, so no iteration)
    hi = 1e-4
    while residual(hi) <= 0.0:
        hi *= 2.0
        if hi > 1e5:
            return math.inf, math.inf, math.inf  # decode work outgrows the time: unstable
    lo = hi / 2.0 if hi > 1e-4 else 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if residual(mid) <= 0.0:
            lo = mid
        else:
            hi = mid
    tpot = hi
    tau, nbar, f_p, k = step(tpot)
    mu = lam * tau
    batch = tokens * tpot
    r_d = tokens / max(batch, 1.0)  # decode steps per second
    r_p = lam / nbar  # prefill steps per second
    en2 = (mu + mu * mu) / -math.expm1(-mu)
    es2 = a_p * a_p + 2.0 * a_p * nbar * e1 + nbar * (e2 - e1 * e1) + en2 * e1 * e1
    lambda2 = r_d * tau * tau + r_p * es2  # time-average of the current step's length
    if not chain:
        return a_p + e1 + (0.5 + lam * e1) * lambda2, tpot, tau
    # the same fixed point on the chain of steps, where the moments' one exists
    laplace = prefill_cost_laplace(lam, b_p, c_p, prompt)

    def gap(t: float) -> float:  # < 0 below the chain's fixed point; step(t)[0]: tau
        per_token = _colocated_chain(lam, a_p, e1, e2 - e1 * e1, laplace, step(t)[0])[1]
        return t - per_token if math.isfinite(per_token) else 1.0

    lo, hi = 0.5 * tpot, 2.0 * tpot
    while gap(lo) > 0.0:
        lo, hi = 0.5 * lo, lo
    while gap(hi) <= 0.0:
        lo, hi = hi, 2.0 * hi
        if hi > 1e5:
            return math.inf, math.inf, math.inf
    while hi - lo > 1e-7 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if gap(mid) <= 0.0 else (lo, mid)
    # an arrival finds some request decoding with probability 1 - e^{-B} (B Poisson)
    tau = step(hi)[0]
    ttft = _colocated_chain(lam, a_p, e1, e2 - e1 * e1, laplace, tau,
                            -math.expm1(-tokens * hi))[0]
    return (ttft, hi, tau) if math.isfinite(ttft) else (math.inf, math.inf, math.inf)


def past_caps(lam: float, tpot_s: float, prompt: TokenDist, output: TokenDist,
              kv_capacity_tokens: float | None, max_num_seqs: int | None) -> bool:
    """Whether a colocated instance at ``lam`` with mean TPOT ``tpot_s`` reaches a cap the
    forms do not model: the mean KV in use (:func:`kv_tokens_in_use`) at
    ``kv_capacity_tokens``, or the mean decode batch (Little: ``lam (E[O] - 1) TPOT``) at
    ``max_num_seqs`` (either None: not checked)."""
    batch = lam * (output.raw_moment(1) - 1.0) * tpot_s
    return (kv_capacity_tokens is not None and math.isfinite(tpot_s)
            and kv_tokens_in_use(lam, tpot_s, prompt, output) >= kv_capacity_tokens) \
        or (max_num_seqs is not None and batch >= max_num_seqs)


def _capped(one, arrival_rate: ArrayLike, prompt: TokenDist, output: TokenDist,
            kv_capacity_tokens: float | None, max_num_seqs: int | None
            ) -> tuple[float | np.ndarray, float | np.ndarray]:
    """``one(lam) -> (ttft, tpot)`` of one instance, broadcast over ``arrival_rate``, and
    ``inf`` where the mean KV in use (:func:`kv_tokens_in_use`) or the mean decode batch
    (Little: ``lam (E[O] - 1) TPOT``) reaches the instance's cap: the colocated forms do
    not model preemption or a full batch, so they refuse those regimes."""
    lam = _arr("arrival_rate", arrival_rate)
    pairs = []
    for x in lam.ravel():
        ttft, tpot = one(float(x))
        if past_caps(float(x), tpot, prompt, output, kv_capacity_tokens, max_num_seqs):
            ttft, tpot = math.inf, math.inf
        pairs.append((ttft, tpot))
    ttft = np.array([p[0] for p in pairs]).reshape(lam.shape)
    tpot = np.array([p[1] for p in pairs]).reshape(lam.shape)
    return _out(ttft), _out(tpot)


def colocated_prefill_priority(arrival_rate: ArrayLike, prompt: TokenDist, output: TokenDist,
                               profile: Profile, *, kv_capacity_tokens: float | None = None,
                               max_num_seqs: int | None = None, chain: bool = True
                               ) -> tuple[float | np.ndarray, float | np.ndarray]:
    r"""Mean TTFT and TPOT of one colocated ``prefill_priority`` instance (vLLM v0,
    DistServe's colocated baseline): whenever requests wait, a prefill step of all of
    them; otherwise a decode step of every running request. ``first_token: prefill``;
    valid while neither the KV cache nor ``max_num_seqs`` binds.

    TPOT, a fixed point: decode steps :math:`\tau = a_d + B k_d` with
    :math:`k_d = b_d (\bar c + 1) + c_d` (:math:`\bar c` the length-biased mean context
    of an active decode), :math:`B = \lambda (E[O]-1)\,\mathrm{TPOT}` (Little), prefill
    taking the time share :math:`f_p = \lambda E[\beta] + a_p r_p` with
    :math:`r_p = \lambda / \bar n` prefill steps a second (a prefill batch holds the
    arrivals of one decode step, :math:`\bar n = \lambda\tau / (1 - e^{-\lambda\tau})`),
    and :math:`\mathrm{TPOT} = \tau / (1 - f_p)` (the moment form). Its fixed point is the
    form's stability rule: the limit is the largest rate where it exists. The values
    (``chain=True``, the default) come from the embedded chain on the instance's steps
    (:func:`_colocated_chain`: a prefill step of all who arrived during the last step, a
    decode step when none did), whose fixed point
    :math:`t = \sum_x \pi_x E[S_x] / \pi_0` (a decode's wait for each token) replaces the
    moments' where that one exists; TTFT is each arrival's residual of its step and the
    next prefill batch, averaged over the chain, with idle time between prefills the
    share :math:`e^{-B}` (no request decoding). ``chain=False``: the moment form's TTFT,
    the residual and one ride in the next prefill batch,
    :math:`E[T] \approx a_p + E[\beta] + (\tfrac12 + \lambda E[\beta]) \Lambda_2` with
    :math:`\Lambda_2 = r_d E[\tau^2] + r_p E[S_p^2]` (decode steps taken as
    deterministic, prefill batches as zero-truncated Poisson sums of i.i.d. costs): it
    misses the prefill batches that follow prefill steps, so it is low where prefill sets
    the load (-14.8 and -20.9 % at 0.6 and 0.7 of the limit on Llama-3.1-8B with prompt
    sigma 1.2; the chain: within 1.7 %).

    Source: ANALYTIC_NOTES, batched item 2 (which reports TTFT +3..+11 %, TPOT -2..-9 % on
    a first check); the batch-size law of prefill steps and the chain are this toolkit's.
    Measured against the batched simulation on the accuracy grid
    (:mod:`validate.batched_accuracy`: OPT-13B and Llama-3.1-8B roofline, prompt sigma
    0.3 to 1.2): below 0.8 of the limit TTFT within 1.7 % and TPOT within 6.0 %; at 0.9,
    TTFT within 6.8 %, TPOT -7.5 to +16 %; at 0.95, TTFT +0.5 to +62 % (the OPT-13B limit with
    sigma 0.3 is more than 5 % high: 6.70 req/s where the simulation is already unstable
    at 0.95 of it). ``inf`` where no fixed point exists, and, given the instance's
    ``kv_capacity_tokens`` or ``max_num_seqs``, where the mean KV in use
    (:func:`kv_tokens_in_use`) or the mean decode batch reaches it: the form does not model
    preemption or a full batch, so it refuses those regimes rather than answer.

    Returns
    -------
    ttft_s, tpot_s : float or ndarray
        Broadcast over ``arrival_rate``.
    """
    return _capped(lambda x: _prefill_priority_one(x, prompt, output, profile, chain),
                   arrival_rate, prompt, output, kv_capacity_tokens, max_num_seqs)


@functools.lru_cache(maxsize=64)
def _prompt_tails(prompt: TokenDist) -> tuple[np.ndarray, np.ndarray, float]:
    """``G[n] = P(L >= n)`` and ``H[n] = E[L; L >= n]`` for ``n = 0 .. max L + 1`` (the
    last 0), and ``E[L^2]``, from the exact prompt law."""
    v, _, w = prefill_costs(1.0, 0.0, prompt)
    top = int(v[-1])
    mass = np.zeros(top + 2)
    mass[v.astype(int)] = w
    tail = np.cumsum(mass[::-1])[::-1]
    tail_l = np.cumsum((mass * np.arange(top + 2))[::-1])[::-1]
    return tail, tail_l, float(w @ (v * v))


def chunk_counts(prompt: TokenDist, chunk_tokens: float) -> tuple[float, float]:
    r"""``E[ceil(L / k)]`` and ``E[sum of chunk^2]`` of a prompt cut into chunks of
    ``k = floor(chunk_tokens)`` tokens (the last one shorter), under the exact prompt law:
    with :math:`L = qk + r`, :math:`\lceil L/k \rceil = q + [r > 0]` and the squares sum to
    :math:`q k^2 + r^2`. From the tails :math:`G(n) = P(L \ge n)`,
    :math:`H(n) = E[L; L \ge n]` in :math:`O(\max L / k)`:
    :math:`E\lceil L/k \rceil = \sum_{j \ge 0} G(jk + 1)`, :math:`E[q] = \sum_{j\ge1} G(jk)`,
    :math:`E[q^2] = \sum_{j \ge 1} (2j - 1) G(jk)`, :math:`E[qL] = \sum_{j\ge1} H(jk)`, and
    :math:`E[q k^2 + r^2] = k^2 E[q] + E[L^2] - 2k E[qL] + k^2 E[q^2]`."""
    tail, tail_l, e_l2 = _prompt_tails(prompt)
    top = len(tail) - 1
    k = max(math.floor(min(chunk_tokens, top)), 1)
    at = np.arange(k, top + 1, k)
    j = np.arange(1, len(at) + 1)
    g, h = tail[at], tail_l[at]
    pieces = float(tail[np.arange(1, top + 1, k)].sum())
    eq, eq2, eql = float(g.sum()), float(((2 * j - 1) * g).sum()), float(h.sum())
    return pieces, k * k * eq + e_l2 - 2.0 * k * eql + k * k * eq2


def _chunk_squares(tokens: np.ndarray, chunk_tokens: float) -> np.ndarray:
    """The sum of squared chunks of prompts of ``tokens`` cut into chunks of
    ``k = max(floor(chunk_tokens), 1)``: ``q k^2 + r^2`` with ``L = qk + r``."""
    k = max(math.floor(chunk_tokens), 1)
    whole, rest = np.divmod(tokens, k)
    return whole * k * k + rest * rest


def _steps_to_finish(prompt: TokenDist, own: float, budget: float, backlog: float) -> float:
    r"""``E[max(ceil(L / own), ceil((U + L) / budget))]``: the steps until a prompt's last
    chunk, at most ``own`` of its tokens a step and ``budget`` of the queue's, behind ``U``
    tokens, ``U`` exponential with mean ``backlog`` (> 0). With
    :math:`n_1 = \lceil L/k \rceil`, :math:`E\lceil Y\rceil = \sum_{j \ge 0} P(Y > j)
    = n_1 + \sum_{j \ge n_1} e^{-(jK - L)/m} = n_1 + e^{-(n_1 K - L)/m} / (1 - e^{-K/m})`."""
    v, _, w = prefill_costs(1.0, 0.0, prompt)
    n1 = np.ceil(v / max(math.floor(own), 1))
    tail = np.exp(-(n1 * budget - v) / backlog) / -math.expm1(-budget / backlog)
    return float(w @ (n1 + tail))


def _chunked_one(lam: float, prompt: TokenDist, output: TokenDist, profile: Profile,
                 budget: int, threshold: int | None) -> tuple[float, float]:
    return _chunked_solve(lam, prompt, output, profile, budget, threshold)[:2]


def _chunked_solve(lam: float, prompt: TokenDist, output: TokenDist, profile: Profile,
                   budget: int, threshold: int | None
                   ) -> tuple[float, float, dict[str, float] | None]:
    """Mean TTFT and TPOT of :func:`colocated_chunked` (one instance at ``lam``) and the
    instance's state at the fixed point (None where there is none)."""
    a_p, b_p, c_p = prefill_affine(profile)
    e_l, e_l2 = prompt.raw_moment(1), prompt.raw_moment(2)
    eo = output.raw_moment(1)
    ctx = decode_context(prompt, output)
    tokens = lam * (eo - 1.0)  # decode tokens per second

    def state(t: float) -> dict[str, float] | None:
        """The instance at TPOT ``t``; None where no prefill budget is left or the steps
        with prefill fill all time."""
        batch = tokens * t
        room = budget - batch
        if room < 1.0:
            return None
        own = min(room, threshold) if threshold else room
        a_d, b_d, c_d = _decode_coeffs(profile, batch, ctx)
        k_d = b_d * (ctx + 1.0) + c_d
        _, b_m, c_m = _decode_coeffs(profile, batch, ctx, mixed=True)
        n1, sq = chunk_counts(prompt, own)
        alpha = a_p + batch * (b_m * (ctx + 1.0) + c_m)
        spread = n1 - e_l / room
        rho = lam * (alpha * n1 + b_p * e_l + c_p * sq) / (1.0 + lam * alpha * spread)
        if rho >= 1.0:
            return None
        steps = n1 - rho * spread
        return {"batch": batch, "room": room, "own": own, "rho": rho, "alpha": alpha,
                "n1": n1, "sq": sq, "r_p": lam * steps,
                "tau_p": rho / (lam * steps) if lam else 0.0, "tau_d": a_d + (batch + 1.0) * k_d}

    def residual(t: float) -> float:
        s = state(t)
        return 1.0 if s is None else t - 1.0 / (s["r_p"] + (1.0 - s["rho"]) / s["tau_d"])

    hi = 1e-4
    while residual(hi) <= 0.0:
        hi *= 2.0
    lo = hi / 2.0 if hi > 1e-4 else 0.0
    while hi - lo > 1e-12 * hi:  # bisection to 1e-12 of TPOT
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if residual(mid) <= 0.0 else (lo, mid)
    s = state(hi)
    if s is None:
        return math.inf, math.inf, None
    rho = s["rho"]
    if lam == 0.0:  # alone: its own chunks, a_p a step, and its tokens
        return s["n1"] * s["alpha"] + b_p * e_l + c_p * s["sq"], hi, s
    current = 0.5 * (rho * s["tau_p"] + (1.0 - rho) * -math.expm1(-s["batch"]) * s["tau_d"])
    theta = rho / (lam * e_l)  # seconds a prompt token takes in steps with prefill
    backlog = lam * theta * e_l2 / (2.0 * (1.0 - rho))  # Pollaczek-Khinchine, in tokens
    steps = (1.0 - rho) * s["n1"] + rho * _steps_to_finish(prompt, s["own"], s["room"],
                                                             backlog / rho)
    # the backlog's tokens belong to prompts in proportion to L^2 (residual work), each
    # token of a prompt L costing c_p q(L) / L in squared chunks: E[L q(L)] / E[L^2]
    v, _, w = prefill_costs(1.0, 0.0, prompt)
    squares = _chunk_squares(v, s["own"])
    ttft = current + steps * s["alpha"] + b_p * (backlog + e_l) \
        + c_p * (s["sq"] + backlog * float(w @ (v * squares)) / e_l2)
    return ttft, hi, dict(s, current_s=current, theta_s=theta)


def colocated_chunked(arrival_rate: ArrayLike, prompt: TokenDist, output: TokenDist,
                      profile: Profile, *, max_num_batched_tokens: int,
                      long_prefill_token_threshold: int | None = None,
                      kv_capacity_tokens: float | None = None, max_num_seqs: int | None = None
                      ) -> tuple[float | np.ndarray, float | np.ndarray]:
    r"""Mean TTFT and TPOT of one colocated ``chunked`` instance (vLLM v1, Sarathi-Serve):
    every step takes each running decode's token, then prompt chunks up to the token
    budget :math:`C` (``max_num_batched_tokens``), a prompt at most :math:`T`
    (``long_prefill_token_threshold``, default :math:`C`) a step, FCFS.
    ``first_token: prefill``; valid while neither the KV cache nor ``max_num_seqs`` binds.

    A token server (ANALYTIC_NOTES, batched item 3) with this toolkit's step accounting.
    At TPOT :math:`t`: decode batch :math:`B = \lambda (E[O]-1)\, t` (Little), prefill
    room :math:`K = C - B` a step, a prompt's chunks :math:`k = \min(K, T)`; a step with
    prefill costs :math:`\alpha = a_p + B k_d` plus :math:`b_p` a prompt token and
    :math:`c_p` a squared chunk (:math:`k_d = b_d(\bar c + 1) + c_d`, :math:`\bar c` the
    length-biased context, as in :func:`colocated_prefill_priority`). A prompt alone takes
    :math:`n_1 = E\lceil L/k \rceil` steps; in a busy queue steps are shared,
    :math:`n_\infty = E[L]/K`; with the time share of steps with prefill
    :math:`\rho = \lambda(\alpha n_s + b_p E[L] + c_p E[\sum \mathrm{chunk}^2])` and
    :math:`n_s = n_1 - \rho (n_1 - n_\infty)` (linear, so
    :math:`\rho = \lambda(\alpha n_1 + \beta) / (1 + \lambda\alpha(n_1 - n_\infty))`).
    TPOT, a fixed point: a decode takes a token every step, so
    :math:`t = 1 / (\lambda n_s + (1 - \rho)/\tau_d)`, decode-only steps
    :math:`\tau_d = a_d + (B + 1) k_d` (a tagged decode sees :math:`B` others). TTFT: the
    current step's residual :math:`\tfrac12(\rho \tau_p + (1-\rho)(1 - e^{-B})\tau_d)`,
    then the steps until its last chunk behind a backlog :math:`U` of prompt tokens
    (Pollaczek-Khinchine in tokens: :math:`E[U] = \lambda\theta E[L^2] / (2(1-\rho))`,
    :math:`\theta = \rho / (\lambda E[L])` seconds a token; :math:`U = 0` with probability
    :math:`1 - \rho`, else exponential), :math:`E[n] = E[\max(\lceil L/k\rceil,
    \lceil (U+L)/K \rceil)]` (:func:`_steps_to_finish`), each costing :math:`\alpha`, and
    the tokens done meanwhile: :math:`E[T] \approx R + E[n]\alpha + b_p
    (E[U] + E[L]) + c_p (E[q(L)] + E[U] E[L q(L)] / E[L^2])` with :math:`q(L)` a prompt's
    squared chunks (:func:`chunk_counts`): the backlog's tokens belong to prompts in
    proportion to :math:`L^2`, as residual work does.

    Source: ANALYTIC_NOTES batched item 3 (a first check: +7..-12 % to 2/3 of the knee);
    the step accounting (:math:`n_s`, :math:`\rho`, the fixed point) is this toolkit's.
    Measured against the batched simulation (DistServe OPT-13B, prompt lognormal sigma
    0.7, outputs sigma 0.8, budgets 256 to 8192 tokens, 4 to 6 x 3,000 s a point): TTFT
    within 3.6 % and TPOT within 2.3 % up to 0.9 of the predicted limit (TPOT -5 % where
    DistServe's decode coefficients switch at batch 95; TTFT -24 % at 0.91 of it with a
    256-token budget); the limit (the largest rate with a fixed point) within 5 % of the
    simulated knee at budgets 256, 512, 2048 and 8192 (stable at 0.95 of it, unstable at
    1.05); ``long_prefill_token_threshold`` 256 of 2048: TTFT within 3 %; 30 times the
    quadratic prefill cost: TTFT within 4.6 %, TPOT 3.8 %. Wide prompts (sigma 1.2, budget
    2048, 8 x 8,000 s, limit 3.95 req/s): TTFT +1.0, +1.3 and -6.1 % (+-8 %) at 0.25,
    0.63 and 0.89 of the limit, but TPOT -2.1, -6.6 and -10.7 % (decodes start just after
    prefills, so more often in the long steps of a busy queue than the step average says).

    Returns
    -------
    ttft_s, tpot_s : float or ndarray
        Broadcast over ``arrival_rate``; ``inf`` where no fixed point exists or a cap is
        reached (:func:`_capped`).
    """
    budget = int(max_num_batched_tokens)
    return _capped(lambda x: _chunked_one(x, prompt, output, profile, budget,
                                          long_prefill_token_threshold),
                   arrival_rate, prompt, output, kv_capacity_tokens, max_num_seqs)


def _decode_share(lam: float, decode_s: float, decoding: float) -> float:
    """:func:`_step_chain`'s ``q``: the chance an empty-handed step is a decode step (not
    an idle wait), so that idle time is the share ``1 - decoding`` between prefills."""
    return decoding / (decoding + (1.0 - decoding) * lam * decode_s) if decoding > 0 else 0.0


def _chain_ttft_moment2(lam: float, a: float, e1: float, var: float, mu3: float,
                        pi: np.ndarray, decode_s: float, decoding: float) -> float:
    r"""``E[T^2]`` of the TTFT over :func:`_step_chain`'s stationary law ``pi``: the
    riders of each step (:func:`_rider_sums`, a prefill step of ``x`` prompts by
    :func:`_batch_moments`, a decode step of ``decode_s``) and, after an idle wait, a
    lone arrival of :math:`E[T^2] = (a + E[\beta])^2 + \mathrm{Var}\,\beta`, divided
    by the riders (the mean's denominator). :func:`batch_prefill_ttft_moment2` on the
    colocated chain; this toolkit's derivation."""
    q = _decode_share(lam, decode_s, decoding)
    x = np.arange(1, len(pi), dtype=float)
    sums, riders = _rider_sums(lam, a, e1, var, *_batch_moments(a, e1, var, mu3, x))
    d_sums, d_riders = _rider_sums(lam, a, e1, var, decode_s, decode_s ** 2, decode_s ** 3)
    num = pi[1:] @ sums + pi[0] * (q * d_sums + (1.0 - q) * ((a + e1) ** 2 + var))
    den = pi[1:] @ riders + pi[0] * (q * d_riders + (1.0 - q))
    return float(num / den)


def _chain_gap(transitions: np.ndarray, a: float, e1: float, var: float) -> tuple[
        float, float, float]:
    r"""The prefill work between two decode steps of :func:`_step_chain` with every
    empty-handed step a decode (``decoding = 1``; state 0 regenerates the chain, so the
    gaps are i.i.d.): ``P(G = 0)``, ``E[G]``, ``E[G^2]``. With :math:`Q` the transitions
    among prefill states and :math:`s_1, s_2` their steps' moments, the first-passage
    moments to state 0 solve :math:`h_1 = s_1 + Q h_1` and
    :math:`h_2 = s_2 + 2 s_1 (Q h_1) + Q h_2` (a step's length taken independent of the
    batches after it); ``G`` starts from the decode step's arrivals."""
    P = transitions
    x = np.arange(1, len(P), dtype=float)
    s1, s2, _ = _batch_moments(a, e1, var, 0.0, x)
    free = np.eye(len(x)) - P[1:, 1:]
    h1 = np.linalg.solve(free, s1)
    h2 = np.linalg.solve(free, s2 + 2.0 * s1 * (P[1:, 1:] @ h1))
    return float(P[0, 0]), float(P[0, 1:] @ h1), float(P[0, 1:] @ h2)


@dataclass(frozen=True)
class ColocatedLaw:
    """One colocated instance's TTFT law and per-token gap law
    (:mod:`analytic.batched_slo`), with the means they carry, and its decode batch: the
    law ``batch_pmf[k] = P(N = k)`` and the decode step ``decode_step_s[k]`` at each
    ``k`` (the gap law's ``base_s`` is the step at the mean batch)."""

    ttft: TTFTLaw
    gap: GapLaw
    mean_ttft_s: float
    mean_tpot_s: float
    batch_pmf: np.ndarray
    decode_step_s: np.ndarray


def _decode_batches(profile: Profile, mean: float, prompt: TokenDist, output: TokenDist
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The decode batch's law around its mean ``mean`` and the decode step at each size
    (:func:`analytic.batched_disagg.batch_law` with
    :func:`~analytic.batched_disagg.batch_variance` over
    :func:`~analytic.batched_disagg.decode_step_table` at the length-biased mean
    context), tabulated to where the law's tail is below ``1e-12``."""
    from .batched_disagg import DECODE_MAX_BATCH, batch_law, batch_variance, decode_step_table

    ctx = decode_context(prompt, output)
    size = 64
    while True:
        table = decode_step_table(profile, ctx, size)
        pmf, beyond = batch_law(mean, batch_variance(mean, table), size + 1)
        if beyond < 1e-12 or size >= DECODE_MAX_BATCH:
            return pmf, table
        size = min(2 * size, DECODE_MAX_BATCH)


def prefill_priority_law(arrival_rate: float, prompt: TokenDist, output: TokenDist,
                         profile: Profile) -> ColocatedLaw | None:
    r"""The laws of one colocated ``prefill_priority`` instance at ``arrival_rate``
    (:func:`colocated_prefill_priority`'s chain at its fixed point): TTFT
    :math:`T = W + \beta(L)` with ``W`` gamma of mean :math:`E[T] - E[\beta]` and
    variance :math:`\mathrm{Var}\,T - \mathrm{Var}\,\beta`
    (:func:`_chain_ttft_moment2`); TPOT: the decode step plus the chain's prefill work
    between two decode steps (:func:`_chain_gap`). None where the form has no fixed
    point."""
    lam = float(arrival_rate)
    ttft, tpot, tau = _prefill_priority_solve(lam, prompt, output, profile)
    if not math.isfinite(ttft):
        return None
    a_p, b_p, c_p = prefill_affine(profile)
    _, beta, w = prefill_costs(b_p, c_p, prompt)
    e1, e2 = prefill_cost_moments(b_p, c_p, prompt)
    var = e2 - e1 * e1
    if lam == 0.0:  # alone: its own prefill, then its decodes
        return ColocatedLaw(TTFTLaw(beta, w, a_p, 0.0), GapLaw(tau, 1.0, 0.0, 0.0), ttft, tpot,
                            np.array([0.0, 1.0]), np.array([0.0, tau]))
    laplace = prefill_cost_laplace(lam, b_p, c_p, prompt)
    decoding = -math.expm1(-lam * (output.raw_moment(1) - 1.0) * tpot)
    solved = _step_chain(lam, a_p, e1, var, laplace, tau, decoding, COLOCATED_CHAIN_STATES)
    busy = _step_chain(lam, a_p, e1, var, laplace, tau, 1.0, COLOCATED_CHAIN_STATES)
    if solved is None or busy is None:
        return None
    m2 = _chain_ttft_moment2(lam, a_p, e1, var, prefill_cost_central3(b_p, c_p, prompt),
                             solved[1], tau, decoding)
    law = TTFTLaw(beta, w, ttft - e1, max(m2 - ttft * ttft - var, 0.0))
    batches = _decode_batches(profile, lam * (output.raw_moment(1) - 1.0) * tpot, prompt,
                              output)
    return ColocatedLaw(law, GapLaw(tau, *_chain_gap(busy[3], a_p, e1, var)), ttft, tpot,
                        *batches)


def chunked_law(arrival_rate: float, prompt: TokenDist, output: TokenDist, profile: Profile,
                max_num_batched_tokens: int, long_prefill_token_threshold: int | None = None
                ) -> ColocatedLaw | None:
    r"""The laws of one colocated ``chunked`` instance at ``arrival_rate``
    (:func:`colocated_chunked` at its fixed point). TTFT :math:`T = W + g(L)`: ``g`` the
    prompt's own steps alone, :math:`\lceil L/k \rceil \alpha + b_p L + c_p
    \sum \mathrm{chunk}^2`; ``W`` gamma of mean :math:`E[T] - E[g(L)]` and the variance
    of the Pollaczek-Khinchine wait of an M/G/1 queue serving prompts in
    :math:`\theta L` seconds, :math:`E[W_q^2] = 2E[W_q]^2 + \lambda\theta^3 E[L^3] /
    (3(1-\rho))`, plus the current step's residual (uniform: its mean squared over 3).
    TPOT: every step carries the tagged decode; a share :math:`\pi = r_p t` of them also
    prefill and are longer by :math:`\tau_p - \tau_d` (their mean), the rest are
    :math:`\tau_d`. None where the form has no fixed point."""
    lam = float(arrival_rate)
    ttft, tpot, s = _chunked_solve(lam, prompt, output, profile, int(max_num_batched_tokens),
                                   long_prefill_token_threshold)
    if s is None or not math.isfinite(ttft):
        return None
    a_p, b_p, c_p = prefill_affine(profile)
    v, _, w = prefill_costs(1.0, 0.0, prompt)
    own = max(math.floor(s["own"]), 1)
    g = np.ceil(v / own) * s["alpha"] + b_p * v + c_p * _chunk_squares(v, own)
    if lam == 0.0:
        return ColocatedLaw(TTFTLaw(g, w, 0.0, 0.0), GapLaw(tpot, 1.0, 0.0, 0.0), ttft, tpot,
                            np.array([0.0, 1.0]), np.array([0.0, tpot]))
    rho, theta = s["rho"], s["theta_s"]
    wq = lam * theta ** 2 * prompt.raw_moment(2) / (2.0 * (1.0 - rho))
    wq2 = 2.0 * wq * wq + lam * theta ** 3 * prompt.raw_moment(3) / (3.0 * (1.0 - rho))
    var_w = wq2 - wq * wq + s["current_s"] ** 2 / 3.0
    law = TTFTLaw(g, w, max(ttft - float(g @ w), 0.0), var_w)
    share = min(s["r_p"] * tpot, 1.0)
    extra = max(s["tau_p"] - s["tau_d"], 0.0)
    gap = GapLaw(s["tau_d"], 1.0 - share, share * extra, share * extra * extra)
    return ColocatedLaw(law, gap, ttft, tpot, *_decode_batches(profile, s["batch"], prompt,
                                                                output))


def colocated_law(arrival_rate: float, prompt: TokenDist, output: TokenDist, instance
                  ) -> ColocatedLaw | None:
    """The laws of one colocated :class:`spec.Instance` at ``arrival_rate`` by its policy
    (:func:`chunked_law` or :func:`prefill_priority_law`); None where its form has no
    fixed point or the instance reaches a cap (:func:`past_caps`)."""
    prof = instance.step_profile
    law = chunked_law(arrival_rate, prompt, output, prof, instance.max_num_batched_tokens,
                      instance.long_prefill_token_threshold) \
        if instance.policy == "chunked" else \
        prefill_priority_law(arrival_rate, prompt, output, prof)
    if law is None or past_caps(arrival_rate, law.mean_tpot_s, prompt, output,
                                instance.kv_tokens, instance.max_num_seqs):
        return None
    return law


def colocated_slo(law: ColocatedLaw, output: TokenDist, slo) -> dict[str, float]:
    """The shares of requests meeting ``slo``'s TTFT bound (by ``law.ttft``), its TPOT
    bound (:func:`analytic.batched_slo.tpot_share`) and both (taken as independent)."""
    ttft = float(law.ttft.cdf(np.array([slo.ttft_s]))[0])
    tpot = tpot_share(slo.tpot_s, law.gap, output, law.batch_pmf, law.decode_step_s)
    return {"slo_attainment_ttft": ttft, "slo_attainment_tpot": tpot,
            "slo_attainment": ttft * tpot}


def largest_rate(ok, start: float = 1.0, ceiling: float = 1e6, steps: int = 40) -> float:
    """The largest rate ``r`` with ``ok(r)``, for ``ok`` true below a limit and false
    above it: doubling from ``start`` until ``ok`` fails (at most ``ceiling``), then
    ``steps`` bisections (``2^-40`` of the bracket). The one stability search of the
    batched forms."""
    lo, hi = 0.0, start
    while ok(hi):
        lo, hi = hi, 2.0 * hi
        if hi > ceiling:
            return math.inf
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def poisson_arrivals(workload) -> None:
    """Refuse arrivals the batched forms do not take: they are Poisson's (``gamma`` with
    ``cv = 1`` is Poisson too: exponential gaps)."""
    arrival = workload.arrival
    if arrival.process == "poisson" or (arrival.process == "gamma" and arrival.cv == 1.0):
        return
    what = f"arrival.process = {arrival.process!r}" + (
        f" with arrival.cv = {arrival.cv!r}" if arrival.process == "gamma" else "")
    raise ValueError(f"{what}: the batched closed forms take Poisson arrivals so far "
                     "(gamma with cv = 1)")


def batched_estimate(workload, cluster, slo=None) -> dict[str, float | bool | str]:
    """The closed-form estimate of a batched cluster, where one exists (today: colocated
    ``prefill_priority`` (:func:`colocated_prefill_priority`) or ``chunked``
    (:func:`colocated_chunked`) instances with an affine profile, ``first_token: prefill``
    and Poisson arrivals; a disaggregated cluster goes to
    :func:`analytic.batched_disagg.disaggregated_estimate`).

    Each of ``k`` instances is taken to see Poisson arrivals at ``rate / k`` (routing
    ignored: least-outstanding routing measured TTFT +2..+4 % and TPOT -1..-3.4 % up to
    0.75 of its limit against the simulation, two instances). Keys: ``mean_ttft_s``,
    ``mean_tpot_s``, ``mean_e2e_s`` (``TTFT + (E[o] - 1) TPOT``: each later token takes
    one mean decode step, the same reading Little's law gives ``mean_batch``),
    ``stable``, ``stability_limit_rps`` (the largest stable total rate, by bisection),
    ``binding`` (``KV memory``, ``max_num_seqs`` or, for ``chunked``, ``token budget``
    where that cap's own limit, ``limit_<bound>_rps``, is the lowest and more than
    :data:`CAP_MARGIN` below compute's (a chunked instance's with an unbounded budget),
    else ``compute``: every cap is reached just below compute's limit, where the batch
    grows without bound),
    ``kv_in_use_fraction``, ``mean_batch``, ``method``; ``p50_ttft_s``, ``p90_ttft_s``,
    ``p99_ttft_s`` from the instance's TTFT law (:func:`prefill_priority_law`,
    :func:`chunked_law`) and, given ``slo`` (a :class:`spec.SLO`), the shares meeting it
    (:func:`colocated_slo`; a disaggregated cluster's by
    :func:`analytic.batched_disagg.slo_attainment`).

    Raises
    ------
    ValueError
        Naming what has no closed form yet.
    """
    from spec import BatchedColocated

    poisson_arrivals(workload)
    if not isinstance(cluster, BatchedColocated):
        from .batched_disagg import disaggregated_estimate

        return disaggregated_estimate(workload, cluster, slo)
    inst = cluster.instance
    if cluster.first_token != "prefill":
        raise ValueError(f"first_token = {cluster.first_token!r}: the colocated closed forms "
                         "take first_token prefill; simulate it: python -m simulation "
                         "serving=batched")
    prof = inst.step_profile
    prefill_affine(prof)  # refuses the mixed form by name
    k = cluster.instances
    limits = {"kv_capacity_tokens": inst.kv_tokens, "max_num_seqs": inst.max_num_seqs}
    p, o = workload.prompt_tokens, workload.output_tokens
    lam = workload.arrival_rate_per_s / k
    if inst.policy == "chunked":
        method = "colocated_chunked"

        def form(rate, budget: int = inst.max_num_batched_tokens, chain: bool = True,
                 **caps):
            return colocated_chunked(rate, p, o, prof, max_num_batched_tokens=budget,
                                     long_prefill_token_threshold=inst
                                     .long_prefill_token_threshold, **caps)
        caps_of = {"token budget": {"budget": inst.max_num_batched_tokens}}
        uncapped = {"budget": UNBOUNDED_BUDGET}
    else:
        method = "colocated_prefill_priority"

        def form(rate, chain: bool = True, **caps):
            return colocated_prefill_priority(rate, p, o, prof, chain=chain, **caps)
        caps_of, uncapped = {}, {}
    # the values: the instance's laws, their means the form's (one solve of the fixed point)
    law = colocated_law(lam, p, o, inst)
    ttft, tpot = (law.mean_ttft_s, law.mean_tpot_s) if law else (math.inf, math.inf)

    def finite(rate: float, **bound) -> bool:  # prefill-priority: the moments' fixed point
        return math.isfinite(form(rate, chain=False, **bound)[0])

    # each cap's limit on top of compute's (the fixed point), per instance. Every cap is
    # reached just below compute's limit, where the batch grows without bound, so a cap
    # binds only where it lowers the limit by more than CAP_MARGIN
    caps_of |= {"KV memory": {"kv_capacity_tokens": limits["kv_capacity_tokens"]},
                "max_num_seqs": {"max_num_seqs": limits["max_num_seqs"]}}
    alone = {"compute": largest_rate(lambda r: finite(r, **uncapped))}
    for name, cap in caps_of.items():
        alone[name] = largest_rate(lambda r, cap=cap: finite(r, **{**uncapped, **cap}))
    lo = min(alone.values())
    caps = {b: v for b, v in alone.items() if v < alone["compute"] * (1.0 - CAP_MARGIN)}
    binding = min(caps, key=caps.__getitem__) if caps else "compute"
    stable = law is not None
    pct = law.ttft.percentiles() if law else {
        f"p{round(q * 100)}_ttft_s": math.inf for q in TTFT_PERCENTILES}
    shares = {} if slo is None else colocated_slo(law, o, slo) if law else {
        k: math.nan for k in SLO_KEYS}
    return {
        "method": f"{method} (Poisson rate/instances per instance)",
        "mean_ttft_s": ttft, **pct, "mean_tpot_s": tpot, **shares,
        "mean_e2e_s": ttft + (o.raw_moment(1) - 1.0) * tpot, "stable": stable,
        "stability_limit_rps": lo * k, "binding": binding,
        **{f"limit_{b.replace(' ', '_')}_rps": v * k for b, v in alone.items()},
        "kv_in_use_fraction": kv_tokens_in_use(lam, tpot, p, o) / inst.kv_tokens
        if stable else math.inf,
        "mean_batch": lam * (o.raw_moment(1) - 1.0) * tpot if stable else math.inf,
    }
