"""Closed forms for disaggregated batched serving (DistServe): a prefill pool whose
instances batch everything waiting, a KV transfer, a decode pool of continuous batches.

Notation as in :mod:`analytic.batched`: ``lam`` the arrival rate per instance of a pool,
a prefill-only step of prompts ``l_i`` costs ``a + sum beta(l_i)``, ``beta(L) = b L + c L^2``.
A decode-only step of ``B`` requests costs ``tau(B)``, the profile's own step time with
``B`` decodes of the mean context (any profile form: DistServe's coefficients switching at
their threshold, the roofline's max of compute and memory, the seed's rates).

The three parts of a request's TTFT (``first_token: decode``, DistServe's convention):

1. **Prefill**, :func:`analytic.batched.batch_prefill_random_ttft`: the embedded chain on
   batch sizes with random prompts (exact for fixed prompts).
2. **Transfer**: ``link_latency_s + P kv_bytes_per_token / bandwidth``, each request on
   its own (the model has no link contention), so its mean is
   ``latency + E[P] kv / bandwidth``.
3. **Decode**, :func:`decode_pool`: flow balance of the decode instance's batch ``N``
   (over-dispersed, :func:`batch_variance`): ``E[N / tau(N)] = lam E[n]`` request-steps
   a second, TPOT by Little's law ``E[N] / (lam E[n])``; a request that arrives while a
   step runs waits for its end (half a step on average). Its first decode step then
   yields token 1.

With ``first_token: prefill`` the prefill's end is the first token; the transfer and the
wait for a decode step then fall inside the first inter-token gap, so
``TPOT = E[N] / (lam E[n]) + (E[transfer] + wait) E[1 / (O - 1) | O >= 2]``.

Imports ``spec`` only, never ``simulation``. Where a bound of the model binds (the
prefill token budget, the decode pool's ``max_num_seqs`` or KV cache), the forms return
``inf`` rather than answer a regime they do not describe; :func:`stability_limits` gives
each bound's own limit (the smallest binds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import optimize, special, stats

from spec import Profile, TokenDist

from .batched import (
    batch_prefill_random_ttft,
    batch_prefill_ttft_moment2,
    largest_rate,
    poisson_arrivals,
    prefill_affine,
    prefill_cost_central3,
    prefill_cost_laplace,
    prefill_cost_moments,
    prefill_costs,
)
from .batched_slo import SLO_KEYS, TTFT_PERCENTILES, TTFTLaw, batch_tpot_share
from .queues import erlang_c

#: Decode batches are tabulated up to this many requests; the batch law's mass beyond
#: the table must stay below :data:`DECODE_TAIL` (else the point is beyond the form).
DECODE_MAX_BATCH = 4096
DECODE_TAIL = 1e-12
#: A prefill batch that exceeds the token budget more often than this (per batch, under
#: the chain's batch-size law) is outside the form's regime: refused by name.
TOKEN_CAP_TOLERANCE = 1e-4


@dataclass(frozen=True)
class DecodeLoad:
    """What one decode instance's requests look like, independent of the rate.

    ``steps_mean``: ``E[n]``, decode steps a request takes (``O`` with
    ``first_token: decode``, ``O - 1`` with ``prefill``); ``context_mean``: the
    length-biased mean cached context of an active decode,
    ``E[n P + n (n - 1) / 2] / E[n]`` (decode ``j = 0 .. n-1`` holds ``P + j`` tokens);
    ``kv_token_steps``: ``E[n P + n (n - 1) / 2]``, a request's KV tokens summed over its
    decode steps.
    """

    steps_mean: float
    context_mean: float
    kv_token_steps: float


def decode_load(prompt: TokenDist, output: TokenDist, first_token: str) -> DecodeLoad:
    """:class:`DecodeLoad` from the exact token laws (``P`` and ``O`` independent):
    ``n = O - e`` with ``e = 1`` for ``first_token: prefill``, else ``0``;
    ``E[n P + n(n-1)/2] = E[n] E[P] + (E[n^2] - E[n]) / 2``."""
    e = 1.0 if first_token == "prefill" else 0.0
    o1, o2 = output.raw_moment(1), output.raw_moment(2)
    n1 = o1 - e
    n2 = o2 - 2.0 * e * o1 + e * e
    kv = n1 * prompt.raw_moment(1) + (n2 - n1) / 2.0
    return DecodeLoad(n1, kv / n1 if n1 > 0 else prompt.raw_moment(1), kv)


def decode_step_table(profile: Profile, context_mean: float,
                      max_batch: int = DECODE_MAX_BATCH) -> np.ndarray:
    """``tau(B)`` for ``B = 0 .. max_batch``: a decode-only step of ``B`` requests of mean
    context ``c`` (``sum (ctx + 1) = B (c + 1)``), from the profile's own step time
    (``tau(0) = 0``). Exact for profiles linear in ``sum (ctx + 1)`` (all forms here)."""
    out = np.zeros(max_batch + 1)
    for b in range(1, max_batch + 1):
        out[b] = profile.step_time_s(n_d=float(b), s_c=b * (context_mean + 1.0))
    return out


def batch_variance(mean: float, table: np.ndarray) -> float:
    r"""Variance of a decode instance's batch ``N`` of mean ``m``: the diffusion (Ornstein-
    Uhlenbeck) approximation of the birth-death process with births ``lam`` and deaths
    ``B / (E[n] tau(B))``. Linearised at ``m``, its drift has slope
    :math:`-(\tau - m\tau')/(E[n]\tau^2)` and its noise intensity is ``2 lam``, so

    .. math:: \mathrm{Var}\,N = m\,\frac{\tau(m)}{\tau(m) - m\,\tau'(m)}

    (``m tau / a`` for an affine step ``a + k B``: the batch is over-dispersed, because a
    larger batch runs slower steps and keeps its requests longer; measured 2.07 m against
    2.0 m predicted on DistServe's OPT-13B profile at 5 req/s). Capped at the geometric
    law's ``m (1 + m)``, the processor-sharing limit reached as the intercept goes to 0
    (the seed's rates profile). ``tau'`` is the slope over ``m +- sqrt(m)``, so a
    coefficient switch (DistServe's threshold) is seen as a slope, not a jump. This
    toolkit's derivation."""
    size = len(table) - 1
    if mean <= 0.0:
        return 0.0
    w = max(1.0, math.sqrt(mean))
    grid = np.arange(size + 1, dtype=float)
    tau = float(np.interp(mean, grid, table))
    lo, hi = max(mean - w, 1.0), min(mean + w, float(size))
    slope = float(np.interp(hi, grid, table) - np.interp(lo, grid, table)) / max(hi - lo, 1e-12)
    intercept = tau - mean * slope
    if intercept <= tau / (1.0 + mean):  # at or past the geometric law
        return mean * (1.0 + mean)
    return mean * tau / intercept  # below m where the step shrinks: batch_law's Poisson


def batch_law(mean: float, variance: float, size: int) -> tuple[np.ndarray, float]:
    """``P(N = k)``, ``k = 0 .. size-1``, and the mass beyond: the negative binomial of
    that mean and variance (``p = m / v``, ``r = m^2 / (v - m)``), Poisson when
    ``v <= m``."""
    # no mass worth a float past 60 standard deviations (both laws' tails are geometric
    # or lighter): the rest of the table is 0 without being computed
    upto = min(size, int(mean + 60.0 * math.sqrt(max(variance, mean)) + 64.0))
    k = np.arange(upto, dtype=float)
    if mean <= 0.0:
        pmf = np.zeros(size)
        pmf[0] = 1.0
        return pmf, 0.0
    # log-pmfs by log-gamma (scipy.stats' pmf costs 20 times more a call, and the
    # stability search calls this thousands of times); the mass beyond is 1 - the sum
    if variance <= mean * (1.0 + 1e-12):
        log_pmf = k * math.log(mean) - mean - special.gammaln(k + 1.0)
    else:
        p = mean / variance
        r = mean * mean / (variance - mean)
        log_pmf = (special.gammaln(k + r) - special.gammaln(r) - special.gammaln(k + 1.0)
                   + r * math.log(p) + k * math.log1p(-p))
    pmf = np.zeros(size)
    pmf[:upto] = np.exp(log_pmf)
    return pmf, max(1.0 - float(pmf.sum()), 0.0)


@dataclass(frozen=True)
class DecodePool:
    """One decode instance at arrival rate ``lam``: the time-average batch ``E[N]`` and
    its variance, the mean step a request sees ``tpot_s``, the wait for a step boundary on
    arrival ``boundary_wait_s``; ``inf`` when unstable (see :func:`decode_pool`)."""

    mean_batch: float
    batch_variance: float
    tpot_s: float
    boundary_wait_s: float


def decode_pool(lam: float, load: DecodeLoad, table: np.ndarray) -> DecodePool:
    r"""A decode instance's batch, TPOT and boundary wait at arrival rate ``lam``.

    Flow balance: a batch of ``N`` completes ``N`` request-steps in ``tau(N)``, so with
    ``N`` at its time-stationary law (:func:`batch_law`, mean ``m``, variance
    :func:`batch_variance`) the request-steps a second must equal the demand,

    .. math:: E[N / \tau(N)] = \lambda E[n],

    solved for ``m`` by bisection (the left side grows with ``m``). Little's law then
    gives the mean step a request sees, ``TPOT = m / (\lambda E[n])`` (a harmonic mean
    of the steps: a long step holds its requests no longer in steps), and a request
    arriving at a random time waits for the running step's end, on average
    :math:`\tfrac12 \sum_{k \ge 1} P(N = k) \tau(k)` (the residual of a step in progress is
    half its length, a step of ``k`` being in progress with probability ``P(N = k)``).

    ``inf`` everywhere when no root lies inside the table (the decode pool cannot keep up:
    for an affine step ``a + k B``, where ``lam E[n] k >= 1``).
    """
    inf = DecodePool(math.inf, math.inf, math.inf, math.inf)
    size = len(table)  # tau(k) for k = 0 .. size - 1
    if lam == 0.0:
        return DecodePool(0.0, 0.0, float(table[1]), 0.0)
    k = np.arange(size)
    rate = np.zeros(size)
    rate[1:] = k[1:] / table[1:]  # request-steps a second at batch k
    demand = lam * load.steps_mean

    def excess(mean: float) -> float:  # > 0 while the batch would still grow
        w, tail = batch_law(mean, batch_variance(mean, table), size)
        return -math.inf if tail > DECODE_TAIL else demand - float(w @ rate)

    lo, hi = 0.0, 1.0
    while (top := excess(hi)) > 0.0:
        lo, hi = hi, 2.0 * hi
        if hi > size:
            return inf
    if top == -math.inf:  # the law outgrew the table before meeting the demand
        return inf
    # excess is continuous and falls through 0 on [lo, hi] (finite at hi, so below it)
    mean = hi if top == 0.0 else optimize.brentq(excess, lo, hi, xtol=1e-13, rtol=1e-13)
    var = batch_variance(mean, table)
    w, _ = batch_law(mean, var, size)
    residual = float(w[1:] @ table[1:]) / 2.0
    return DecodePool(mean, var, mean / demand, residual)


def _inverse_steps_mean(output: TokenDist) -> float:
    """``E[1 / (O - 1) | O >= 2]`` from the exact output law."""
    values, probs = output.pmf()
    keep = values >= 2
    return float(np.sum(probs[keep] / (values[keep] - 1.0)) / np.sum(probs[keep]))


def _token_cap_excess(pi: np.ndarray, prompt: TokenDist, cap: int) -> float:
    """The batch-weighted probability that a prefill batch's prompts exceed ``cap``
    tokens: ``sum_x pi_x P(L_1 + ... + L_x > cap)``, the sums by a normal law of the
    exact mean and variance (continuity-corrected)."""
    m1, m2 = prompt.raw_moment(1), prompt.raw_moment(2)
    x = np.arange(1, len(pi) + 1)
    sd = np.sqrt(np.maximum(x * (m2 - m1 * m1), 1e-300))
    return float(pi @ stats.norm.sf((cap + 0.5 - x * m1) / sd))


@dataclass(frozen=True)
class _Parts:
    """The disaggregated form's pieces at one total rate (``inf`` where a pool cannot
    keep up)."""

    prefill_s: float
    prefill_m2_s2: float  # E[T^2] of the prefill part
    batch_law: np.ndarray
    transfer_s: float
    pool: DecodePool
    kv_tokens: float
    table: np.ndarray  # the decode pool's step time by batch size


def _parts(rate: float, prompt: TokenDist, output: TokenDist, cluster) -> _Parts:
    pre = cluster.prefill
    if pre.policy != "prefill_priority":
        raise ValueError(f"{pre.name}.policy = {pre.policy!r}: the disaggregated closed form "
                         "covers prefill instances that batch every waiting prompt "
                         "(policy prefill_priority); simulate chunked prefill instances: "
                         "python -m simulation serving=batched mode=disagg")
    a, b, c = prefill_affine(pre.step_profile)
    e1, e2 = prefill_cost_moments(b, c, prompt)
    lam_p = rate / cluster.prefill_instances
    laplace = prefill_cost_laplace(lam_p, b, c, prompt)
    prefill_s, pi = batch_prefill_random_ttft(lam_p, a, e1, e2 - e1 * e1, laplace)
    m2 = batch_prefill_ttft_moment2(lam_p, a, e1, e2 - e1 * e1,
                                    prefill_cost_central3(b, c, prompt), pi, laplace) \
        if math.isfinite(prefill_s) else math.inf
    if cluster.prefill_instances > 1 and cluster.routing == "least_outstanding" \
            and math.isfinite(prefill_s):
        prefill_s, m2 = least_outstanding_prefill(prefill_s, m2, pi, lam_p, a, e1, e2,
                                                  cluster.prefill_instances)
    pool, kv, table = _decode_side(rate, prompt, output, cluster)
    return _Parts(prefill_s, m2, pi, cluster.transfer_s(prompt.raw_moment(1)), pool, kv,
                  table)


def least_outstanding_prefill(mean_s: float, m2_s2: float, batch_law: np.ndarray,
                              lam: float, a: float, e1: float, e2: float, instances: int
                              ) -> tuple[float, float]:
    r"""The prefill TTFT's mean and second moment over ``instances`` batch-everything
    instances behind least-outstanding routing, from one instance's chain at ``lam``
    (the total rate over the instances).

    One instance alone (random split, Poisson arrivals) is busy a fraction
    :math:`u = \lambda E_\pi[S_x] / E_\pi[x]` of the time (batches start at rate
    :math:`\lambda / E_\pi[x]`), and by PASTA an arrival finds it idle with probability
    :math:`1 - u` and then costs :math:`a + \beta` alone; so the chain's moments split as
    :math:`E[T^j] = u\,E[T^j_{\rm rider}] + (1 - u) E[(a + \beta)^j]`. The router sends
    an arrival to an idle instance whenever one exists: it rides a batch only when all
    ``k`` are busy, with probability Erlang C(k, k u) (the M/M/k share of arrivals that
    wait, for instances whose busy periods the router keeps apart), so
    :math:`E[T^j] = C\,E[T^j_{\rm rider}] + (1 - C) E[(a + \beta)^j]`. One instance gives
    the chain back (``C(1, u) = u``). This toolkit's approximation; it ignores that the
    router also picks the busy instance with the fewest riders. Measured in
    ``docs/batched.md``."""
    x = np.arange(1, batch_law.size + 1, dtype=float)
    u = lam * float(batch_law @ (a + x * e1)) / float(batch_law @ x)
    if not 0.0 < u < 1.0:
        return mean_s, m2_s2
    alone = (a + e1, a * a + 2.0 * a * e1 + e2)  # E[a + beta], E[(a + beta)^2]
    wait = float(erlang_c(instances, instances * u))
    out = []
    for chain, solo in zip((mean_s, m2_s2), alone, strict=True):
        rider = (chain - (1.0 - u) * solo) / u
        out.append(wait * rider + (1.0 - wait) * solo)
    return out[0], out[1]


def _decode_side(rate: float, prompt: TokenDist, output: TokenDist, cluster
                 ) -> tuple[DecodePool, float, np.ndarray]:
    """A decode instance's pool at total ``rate``, its mean KV tokens in use (the
    prompt's blocks are reserved from the transfer's start, one more token a step:
    Little's law over the request's time there) and its step table."""
    lam_d = rate / cluster.decode_instances
    load = decode_load(prompt, output, cluster.first_token)
    table = _table(cluster.decode.step_profile, load.context_mean)
    pool = decode_pool(lam_d, load, table)
    transfer_s = cluster.transfer_s(prompt.raw_moment(1))
    kv = lam_d * ((transfer_s + pool.boundary_wait_s) * prompt.raw_moment(1)
                  + pool.tpot_s * load.kv_token_steps)
    return pool, kv, table


@lru_cache(maxsize=64)
def _table(profile: Profile, context_mean: float) -> np.ndarray:
    """:func:`decode_step_table` up to :data:`DECODE_MAX_BATCH`, memoised per profile and
    context (the stability search evaluates the same decode pool many times)."""
    return decode_step_table(profile, context_mean)


def _bound(parts: _Parts, prompt: TokenDist, cluster) -> str | None:
    """Which bound of the model the form's regime crosses at these parts, if any."""
    pre, dec = cluster.prefill, cluster.decode
    if not math.isfinite(parts.prefill_s):
        return "prefill compute"
    if not math.isfinite(parts.pool.tpot_s):
        return "decode compute"
    if parts.kv_tokens >= dec.kv_tokens:
        return "decode KV memory"
    if parts.pool.mean_batch >= dec.max_num_seqs:
        return "decode max_num_seqs"
    cap = min(pre.max_num_batched_tokens, pre.kv_tokens)
    if (_token_cap_excess(parts.batch_law, prompt, cap) > TOKEN_CAP_TOLERANCE
            or float(parts.batch_law[pre.max_num_seqs:].sum()) > TOKEN_CAP_TOLERANCE):
        return "prefill token budget"
    return None


def ttft_law(parts: _Parts, ttft_mean_s: float, prompt: TokenDist, cluster) -> TTFTLaw:
    r"""The disaggregated form's TTFT law (a finite mean): ``T = W + g(L)``, the request's
    own prompt ``L`` exactly and the rest ``W`` as a gamma law.

    ``g(L)`` is what the request's own prompt costs it: its prefill cost
    :math:`\beta(L) = bL + cL^2`, plus with ``first_token: decode`` its transfer
    :math:`L\,\kappa` (seconds a token); so the long-prompt tail and the correlation of
    prefill and transfer come from the prompt law itself. ``W`` (the wait, the batch's
    intercept and the other prompts in the batch, the boundary wait) is taken as
    independent of ``L``, of mean :math:`E[T] - E[g(L)]` and variance
    :math:`\mathrm{Var}\,T_p - \mathrm{Var}\,\beta + \bar w^2/3`, where :math:`T_p`'s
    second moment is :func:`analytic.batched.batch_prefill_ttft_moment2` and the boundary
    wait (mean :math:`\bar w`) is uniform over a step; then
    :math:`P(T \le t) = \sum_l P(L = l)\,F_W(t - g(l))`. This toolkit's construction;
    measured against the simulation in ``docs/batched.md``.
    """
    _, b, c = prefill_affine(cluster.prefill.step_profile)
    v, beta, w = prefill_costs(b, c, prompt)
    g = beta.copy()
    var_w = parts.prefill_m2_s2 - parts.prefill_s ** 2 - float(((beta - beta @ w) ** 2) @ w)
    if cluster.first_token == "decode":
        g += (cluster.transfer_s(1.0) - cluster.transfer_s(0.0)) * v
        var_w += parts.pool.boundary_wait_s ** 2 / 3.0
    return TTFTLaw(g, w, ttft_mean_s - float(g @ w), max(var_w, 0.0))


def slo_attainment(law: TTFTLaw, parts: _Parts, output: TokenDist, cluster, slo
                   ) -> dict[str, float]:
    """The shares of requests meeting ``slo.ttft_s`` (by the TTFT ``law``),
    ``slo.tpot_s`` (:func:`analytic.batched_slo.batch_tpot_share` over the decode pool's
    batch law; with ``first_token: prefill`` the transfer and boundary wait fall inside
    the first gap) and both (taken as independent: the TTFT is the prefill pool's, the
    TPOT the decode pool's)."""
    ttft = float(law.cdf(np.array([slo.ttft_s]))[0])
    pmf, _ = batch_law(parts.pool.mean_batch, parts.pool.batch_variance, len(parts.table))
    shift = 0.0 if cluster.first_token == "decode" else \
        parts.transfer_s + parts.pool.boundary_wait_s
    tpot = batch_tpot_share(slo.tpot_s, pmf, parts.table, output, shift)
    return {"slo_attainment_ttft": ttft, "slo_attainment_tpot": tpot,
            "slo_attainment": ttft * tpot}


def disaggregated_batched(arrival_rate: float, prompt: TokenDist, output: TokenDist,
                          cluster, slo=None) -> dict[str, float | bool | str | None]:
    """Mean TTFT, TPOT and E2E of a :class:`spec.BatchedDisaggregated` cluster at total
    rate ``arrival_rate`` (req/s), Poisson arrivals split evenly over each pool's
    instances; several prefill instances behind least-outstanding routing by
    :func:`least_outstanding_prefill` (other routings, and the decode pool, as a random
    split). See the module's docstring for the three parts.

    Returns a dict: ``mean_ttft_s``, ``p50_ttft_s``, ``p90_ttft_s``, ``p99_ttft_s``
    (:func:`ttft_law`), ``mean_tpot_s``, ``mean_e2e_s``; given a
    :class:`spec.SLO`, ``slo_attainment_ttft``, ``slo_attainment_tpot`` and
    ``slo_attainment`` (:func:`slo_attainment`); the parts
    ``mean_prefill_ttft_s`` (arrival to prefill's end), ``mean_transfer_s``,
    ``mean_boundary_wait_s``, ``mean_decode_batch``, ``kv_in_use_fraction``, ``stable``
    and ``bound``: ``None``, or the bound that the point crosses (``prefill compute``,
    ``decode compute``, ``decode KV memory``, ``decode max_num_seqs``: the latencies are
    then ``inf`` and ``stable`` false; ``prefill token budget``: batches would be split,
    which the form does not model: latencies ``inf``, ``stable`` left to the other bounds).
    """
    out, parts, law = _point(arrival_rate, prompt, output, cluster)
    if law is None:  # past a bound: no attainment the form can speak for
        pct = {f"p{round(q * 100)}_ttft_s": math.inf for q in TTFT_PERCENTILES}
        shares = {k: math.nan for k in SLO_KEYS}
    else:
        pct = law.percentiles()
        shares = slo_attainment(law, parts, output, cluster, slo) if slo else {}
    # the percentiles beside the mean TTFT (the order a table shows)
    return {"mean_ttft_s": out["mean_ttft_s"], **pct, **out, **(shares if slo else {})}


def disaggregated_slo(arrival_rate: float, prompt: TokenDist, output: TokenDist, cluster,
                      slo) -> dict[str, float] | None:
    """:func:`slo_attainment` at total rate ``arrival_rate`` (what
    :func:`disaggregated_batched` adds given ``slo``, without its percentiles); None past
    a bound."""
    _, parts, law = _point(arrival_rate, prompt, output, cluster)
    return None if law is None else slo_attainment(law, parts, output, cluster, slo)


def _point(arrival_rate: float, prompt: TokenDist, output: TokenDist, cluster
           ) -> tuple[dict, _Parts, TTFTLaw | None]:
    """:func:`disaggregated_batched`'s means and parts, and the TTFT law (None past a
    bound, the latencies then ``inf``)."""
    parts = _parts(arrival_rate, prompt, output, cluster)
    pool, wait, transfer_s = parts.pool, parts.pool.boundary_wait_s, parts.transfer_s
    bound = _bound(parts, prompt, cluster)
    out = {"mean_ttft_s": math.inf, "mean_tpot_s": math.inf, "mean_e2e_s": math.inf,
           "mean_prefill_ttft_s": parts.prefill_s, "mean_transfer_s": transfer_s,
           "mean_boundary_wait_s": wait, "mean_decode_batch": pool.mean_batch,
           "kv_in_use_fraction": parts.kv_tokens / cluster.decode.kv_tokens,
           "stable": bound in (None, "prefill token budget"), "bound": bound}
    if bound is not None:
        return out, parts, None
    steps_after_first = output.raw_moment(1) - 1.0
    if cluster.first_token == "decode":
        ttft = parts.prefill_s + transfer_s + wait + pool.tpot_s
        tpot = pool.tpot_s
        e2e = ttft + steps_after_first * pool.tpot_s
    else:
        ttft = parts.prefill_s
        tpot = pool.tpot_s + (transfer_s + wait) * _inverse_steps_mean(output)
        # a one-token request ends at its prefill; the others after transfer, wait, steps
        values, probs = output.pmf()
        p_more = float(probs[values >= 2].sum() / probs.sum())
        e2e = parts.prefill_s + p_more * (transfer_s + wait) + steps_after_first * pool.tpot_s
    return (dict(out, mean_ttft_s=ttft, mean_tpot_s=tpot, mean_e2e_s=e2e), parts,
            ttft_law(parts, ttft, prompt, cluster))


def stability_limits(prompt: TokenDist, output: TokenDist, cluster) -> dict[str, float]:
    """The largest stable total rate (req/s) under each bound alone: ``prefill compute``
    (``k_p / E[beta]``, exact for the batch-everything instance), ``decode compute``
    (the largest rate :func:`decode_pool` solves), ``decode KV memory`` and
    ``decode max_num_seqs`` (where the mean KV in use or the mean batch reaches the
    instance's), the last three by bisection. The link never binds: transfers run side
    by side in this model. The smallest is the cluster's limit."""
    _, b, c = prefill_affine(cluster.prefill.step_profile)
    e1, _ = prefill_cost_moments(b, c, prompt)
    dec = cluster.decode

    def side(rate: float) -> tuple[DecodePool, float, np.ndarray]:
        return _decode_side(rate, prompt, output, cluster)

    return {
        "prefill compute": cluster.prefill_instances / e1,
        "decode compute": largest_rate(lambda r: math.isfinite(side(r)[0].tpot_s)),
        "decode KV memory": largest_rate(lambda r: side(r)[1] < dec.kv_tokens),
        "decode max_num_seqs": largest_rate(
            lambda r: side(r)[0].mean_batch < dec.max_num_seqs),
    }


def disaggregated_estimate(workload, cluster, slo=None
                           ) -> dict[str, float | bool | str | None]:
    """:func:`disaggregated_batched` at the workload's rate, with the cluster's stability
    limit (``stability_limit_rps``), the bound that sets it (``binding``) and each bound's
    own limit (``limit_<bound>_rps``, see :func:`stability_limits`).

    Raises
    ------
    ValueError
        Non-Poisson arrivals; chunked prefill instances; a profile without an affine
        prefill step (named).
    """
    poisson_arrivals(workload)
    p, o = workload.prompt_tokens, workload.output_tokens
    est = disaggregated_batched(workload.arrival_rate_per_s, p, o, cluster, slo)
    limits = stability_limits(p, o, cluster)
    binding = min(limits, key=limits.__getitem__)
    return {"method": "disaggregated_batched (prefill chain, transfer, decode flow balance; "
                      "Poisson rate/instances per instance)",
            **est, "stability_limit_rps": limits[binding], "binding": binding,
            **{f"limit_{k.replace(' ', '_')}_rps": v for k, v in limits.items()}}
