"""The colocated chunked-prefill closed form: its exact pieces, and against the simulation."""

import math

import numpy as np
import pytest

from analytic.batched import batched_estimate, chunk_counts, colocated_chunked
from simulation.batched_fast import simulate_batched_fast
from simulation.requests import generate_requests
from spec import (
    ArrivalProcess,
    BatchedColocated,
    Instance,
    Profile,
    TokenDist,
    Workload,
    config_from_mapping,
    load_profile,
)
from tests.batched_knee import opt13b_colocated_stable

NAME = "distserve/opt-13b_tp1"
PROFILE = load_profile(NAME)
A_P, B_P, C_P = PROFILE.coeffs[:3]
PROMPT = TokenDist.lognormal(6.0, 0.7, 1)
OUTPUT = TokenDist.lognormal(5.0, 0.8, 2)


@pytest.mark.parametrize("prompt", [PROMPT, TokenDist.lognormal(6.0, 1.2, 1),
                                    TokenDist.lognormal(3.0, 0.3, 1)])
@pytest.mark.parametrize("chunk", [1, 7, 256, 511.7, 2048, 10**9])
def test_chunk_counts_against_cutting_every_prompt(prompt, chunk):
    """Pieces and squared pieces of every prompt length, cut directly (divmod)."""
    values, probs = prompt.pmf()
    v, w = values.astype(float), probs / probs.sum()
    k = max(math.floor(chunk), 1)
    whole, rest = np.divmod(v, k)
    pieces, squares = chunk_counts(prompt, chunk)
    assert pieces == pytest.approx(w @ (whole + (rest > 0)), rel=1e-9)
    assert squares == pytest.approx(w @ (whole * k * k + rest * rest), rel=1e-8)


@pytest.mark.parametrize(("length", "budget", "threshold"), [
    (1000, 512, None), (1000, 2048, None), (1000, 2048, 300), (512, 512, None)])
def test_a_request_alone_is_its_chunks(length, budget, threshold):
    """At zero load a prompt of L tokens runs alone: ceil(L / k) steps of a_p each, its
    tokens at b_p and its chunks' squares at c_p (k the budget or the threshold), and each
    decode step is the decode step of a batch of one."""
    k = min(budget, threshold or budget)
    chunks = [k] * (length // k) + ([length % k] if length % k else [])
    ttft, tpot = colocated_chunked(0.0, TokenDist.fixed(length), OUTPUT, PROFILE,
                                   max_num_batched_tokens=budget,
                                   long_prefill_token_threshold=threshold)
    assert ttft == pytest.approx(len(chunks) * A_P + B_P * length
                                 + C_P * sum(c * c for c in chunks), rel=1e-12)
    ctx = length + (OUTPUT.raw_moment(2) - 3 * OUTPUT.raw_moment(1) + 2) / (
        2 * (OUTPUT.raw_moment(1) - 1))
    a, b, c = PROFILE.coeffs[3:6]  # DistServe's small-batch decode set
    assert tpot == pytest.approx(a + b * (ctx + 1) + c, rel=1e-9)


#: DistServe's OPT-13B fit with 30 times its quadratic prefill cost: attention-heavy
#: steps (a 512-token chunk's c_p l^2 then matches its b_p l), where the squared chunks
#: of the backlog and of the own prompt carry a large share of TTFT
QUADRATIC = Profile("opt-13b_quadratic_x30", "distserve",
                    (A_P, B_P, 30 * C_P, *PROFILE.coeffs[3:]), kv_capacity_tokens=10**8)


def simulated(lam: float, budget: int, threshold: int | None = None, reps: int = 6,
              seconds: float = 3000.0, profile: Profile | str = NAME
              ) -> tuple[float, float, float, float]:
    """Mean TTFT and TPOT over ``reps`` runs, with the standard errors of both means."""
    inst = Instance(profile=profile, policy="chunked", max_num_batched_tokens=budget,
                    long_prefill_token_threshold=threshold, max_num_seqs=10**5,
                    kv_capacity_tokens=10**8)
    cluster = BatchedColocated(instances=1, instance=inst, first_token="prefill")
    wl = Workload(lam, PROMPT, OUTPUT, ArrivalProcess())
    ttft, tpot = [], []
    for ss in np.random.SeedSequence(5).spawn(reps):
        t, _ = simulate_batched_fast(generate_requests(wl, seconds, ss), cluster,
                                     (seconds / 10, seconds))
        ttft.append(t.ttft_s[t.measured].mean())
        tpot.append(np.nanmean(t.tpot_s[t.measured]))
    se = lambda x: np.std(x, ddof=1) / np.sqrt(reps)  # noqa: E731
    return np.mean(ttft), se(ttft), np.mean(tpot), se(tpot)


@pytest.mark.parametrize(("lam", "budget", "threshold", "profile"), [
    (1.0, 512, None, PROFILE), (4.0, 512, None, PROFILE), (4.0, 2048, None, PROFILE),
    (3.5, 2048, 256, PROFILE), (4.5, 8192, None, PROFILE), (2.0, 512, None, QUADRATIC),
    (3.0, 2048, None, QUADRATIC)])
def test_mean_ttft_and_tpot_within_the_simulations_interval_widened_5_percent(
        lam, budget, threshold, profile):
    """Up to 0.9 of the predicted limit (5.13 req/s at budget 512, 5.78 at 8192): each
    mean inside the simulation's 99 % interval (t with 5 d.o.f., 4.03 s.e.) widened by 5 %
    of the simulated mean: the accuracy issue 11 asks of the closed forms. Measured
    (docstring of :func:`colocated_chunked`): TTFT within 3.6 %, TPOT within 2.3 % (the
    attention-heavy profile: TTFT within 4.6 %, TPOT 3.8 %)."""
    ttft, tpot = colocated_chunked(lam, PROMPT, OUTPUT, profile,
                                   max_num_batched_tokens=budget,
                                   long_prefill_token_threshold=threshold)
    s_ttft, se_ttft, s_tpot, se_tpot = simulated(lam, budget, threshold, profile=profile)
    assert abs(ttft - s_ttft) <= 4.03 * se_ttft + 0.05 * s_ttft
    assert abs(tpot - s_tpot) <= 4.03 * se_tpot + 0.05 * s_tpot


@pytest.mark.parametrize(("lam", "budget"), [(1.0, 512), (2.0, 256)])
def test_light_load_tpot_within_one_percent(lam, budget):
    """At light load TPOT is nearly the decode-only step of the tagged request and the
    ``B`` others (Poisson: a tagged decode sees the batch's mean besides itself): within
    1 % of the simulation (standard error 0.4 %). Taking the step at ``max(B, 1)`` instead,
    as for prefill-priority, is 2.3 % low here."""
    tpot = colocated_chunked(lam, PROMPT, OUTPUT, PROFILE, max_num_batched_tokens=budget)[1]
    s_tpot = simulated(lam, budget)[2]
    assert abs(tpot / s_tpot - 1) <= 0.01


def test_a_small_budget_binds_and_the_estimate_names_it():
    """A 256-token budget leaves less prefill room per step than compute alone allows:
    the budget's limit is the lowest, and the estimate names it; the budget-free limit is
    the prefill-priority form's compute limit's neighbour (the same decode work)."""
    cfg = config_from_mapping({
        "serving": "batched", "mode": "mono", "arrival": {"rate_per_s": 2.0},
        "prompt_tokens": {"mean": 6.0, "sigma": 0.7, "min_value": 1},
        "output_tokens": {"mean": 5.0, "sigma": 0.8, "min_value": 2}, "profile": NAME,
        "batched_mono": {"instances": 2, "first_token": "prefill",
                         "instance": {"policy": "chunked", "max_num_batched_tokens": 256,
                                      "max_num_seqs": 10**5, "kv_capacity_tokens": 10**8}}})
    cluster = next(c for c in cfg.clusters() if c.mode == "mono")
    e = batched_estimate(cfg.workload, cluster)
    assert e["binding"] == "token budget"
    assert e["stability_limit_rps"] == e["limit_token_budget_rps"]
    assert e["limit_token_budget_rps"] < 0.9 * e["limit_compute_rps"]
    # per instance: rate / 2 each
    one = colocated_chunked(1.0, cfg.workload.prompt_tokens, cfg.workload.output_tokens,
                            PROFILE, max_num_batched_tokens=256)
    assert (e["mean_ttft_s"], e["mean_tpot_s"]) == pytest.approx(one, rel=1e-12)
    assert e["method"].startswith("colocated_chunked")


@pytest.mark.slow
@pytest.mark.parametrize("budget", [512, 8192])
def test_predicted_limit_within_five_percent_of_the_simulated_knee(budget):
    """The largest rate with a fixed point, K: the simulation (stability verdict,
    3 x 16,000 s) is stable at 0.95 K and unstable at 1.05 K."""
    lo, hi = 3.0, 8.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.isfinite(colocated_chunked(
            mid, PROMPT, OUTPUT, PROFILE, max_num_batched_tokens=budget)[0]) else (lo, mid)

    assert opt13b_colocated_stable(0.95 * lo, "chunked", budget)
    assert not opt13b_colocated_stable(1.05 * lo, "chunked", budget)
