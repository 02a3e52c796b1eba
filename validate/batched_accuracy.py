"""The batched closed forms' accuracy grid (issue 11): what it holds, and how far the forms
are from the simulation on it.

The grid, :data:`CASES` x :data:`LOADS`: two profiles (DistServe's OPT-13B fit and the
Llama-3.1-8B roofline on an A100), three architectures (one colocated
``prefill_priority`` instance, one colocated ``chunked`` instance of budget
:data:`CHUNK_BUDGET`, a disaggregated pair of one prefill and one decode instance), prompt
sigma 0.3, 0.7 and 1.2 (lognormal of median ``e^6``, cut at the model's context),
outputs lognormal of median ``e^5`` and sigma 0.8; the instances roomy (KV cache and
``max_num_seqs`` never bind: the KV-bound regime is ``+sweep=kv``'s), Poisson arrivals at
0.2 to 0.95 of the form's own predicted limit. Each point is simulated once by
``scripts/make_batched_accuracy_reference.py`` (the exact fast engine,
:data:`REPLICATIONS` runs of :data:`REQUESTS` requests) into
``tests/data/batched_accuracy_reference.json``; each case's knee too (the stability
verdict at 0.95 and 1.05 of the predicted limit). :func:`evaluate` prices today's forms
on it; ``tests/test_batched_accuracy.py`` holds them to the issue's criteria and the docs
print :func:`summary_markdown`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The profiles of the grid and their context (the prompt law's cut).
PROFILES = {"distserve/opt-13b_tp1": 2048, "roofline/llama-3.1-8b_a100-80gb_tp1": 8192}
ARCHITECTURES = ("prefill_priority", "chunked", "disaggregated")
SIGMAS = (0.3, 0.7, 1.2)
LOADS = (0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95)
#: The chunked instance's token budget (vLLM v1's default for online serving).
CHUNK_BUDGET = 2048
REPLICATIONS = 5
REQUESTS = 20_000
#: The knee probes: this many runs of this many seconds at 0.95 and 1.05 of the limit.
KNEE_REPLICATIONS, KNEE_SECONDS = 3, 16_000.0
#: Instances no cap binds in.
ROOMY = {"max_num_seqs": 10**5, "kv_capacity_tokens": 10**8}


@dataclass(frozen=True)
class Case:
    """One line of the grid: a profile, an architecture, a prompt spread."""

    profile: str
    architecture: str
    sigma: float

    @property
    def key(self) -> str:
        return f"{self.profile}|{self.architecture}|{self.sigma:g}"

    def laws(self):
        from spec import TokenDist

        return (TokenDist("log", mean=6.0, sigma=self.sigma, min_value=1,
                          max_value=PROFILES[self.profile]),
                TokenDist.lognormal(5.0, 0.8, 2))

    def cluster(self):
        from spec import BatchedColocated, BatchedDisaggregated, Instance

        if self.architecture == "disaggregated":
            return BatchedDisaggregated(
                prefill_instances=1, decode_instances=1, first_token="prefill",
                prefill=Instance(profile=self.profile, policy="prefill_priority",
                                 max_num_batched_tokens=10**6, **ROOMY),
                decode=Instance(profile=self.profile, policy="prefill_priority", **ROOMY))
        budget = CHUNK_BUDGET if self.architecture == "chunked" else 10**6
        return BatchedColocated(instances=1, first_token="prefill", instance=Instance(
            profile=self.profile, policy=self.architecture, max_num_batched_tokens=budget,
            **ROOMY))

    def closed_form(self, rate: float, chain: bool = True) -> tuple[float, float]:
        """The form's mean TTFT and TPOT (s) at ``rate`` (``inf`` beyond its limit;
        ``chain=False``: prefill-priority's moment form, whose fixed point sets the
        limit)."""
        from analytic.batched import colocated_chunked, colocated_prefill_priority
        from analytic.batched_disagg import disaggregated_batched
        from spec import load_profile

        prompt, output = self.laws()
        prof = load_profile(self.profile)
        if self.architecture == "prefill_priority":
            ttft, tpot = colocated_prefill_priority(rate, prompt, output, prof, chain=chain)
        elif self.architecture == "chunked":
            ttft, tpot = colocated_chunked(rate, prompt, output, prof,
                                           max_num_batched_tokens=CHUNK_BUDGET)
        else:
            e = disaggregated_batched(rate, prompt, output, self.cluster())
            ttft, tpot = e["mean_ttft_s"], e["mean_tpot_s"]
        return float(ttft), float(tpot)

    def limit(self) -> float:
        """The form's predicted stability limit (req/s): the estimate's own
        (:func:`analytic.batched_estimate`, priced at a light 0.1 req/s)."""
        from analytic.batched import batched_estimate
        from spec import ArrivalProcess, Workload

        workload = Workload(0.1, *self.laws(), ArrivalProcess())
        return float(batched_estimate(workload, self.cluster())["stability_limit_rps"])


CASES = tuple(Case(p, a, s) for p in PROFILES for a in ARCHITECTURES for s in SIGMAS)


def _case(stored: dict) -> Case:
    """The :class:`Case` of one of a reference's ``cases``."""
    return Case(stored["profile"], stored["architecture"], stored["sigma"])


def simulate_point(case: Case, rate: float, seed: int, replications: int = REPLICATIONS,
                   requests: int | None = REQUESTS, seconds: float | None = None
                   ) -> dict[str, object]:
    """Mean TTFT and TPOT over ``replications`` runs of ``requests`` requests (or
    ``seconds``), warm-up a tenth, with 95 % t-interval half-widths; ``stable`` when
    every run's backlog is (:mod:`simulation.batched_metrics`)."""
    from scipy import stats

    from simulation.batched_fast import simulate_batched_fast
    from simulation.batched_metrics import summarise_batched
    from simulation.requests import generate_requests
    from spec import SLO, ArrivalProcess, Workload

    prompt, output = case.laws()
    wl = Workload(rate, prompt, output, ArrivalProcess())
    span = seconds if seconds is not None else requests / rate
    window = (span / 10, span)
    rows, stable = [], True
    for ss in np.random.SeedSequence(seed).spawn(replications):
        times, engine = simulate_batched_fast(generate_requests(wl, span, ss), case.cluster(),
                                              window)
        m = times.measured
        rows.append((float(times.ttft_s[m].mean()), float(np.nanmean(times.tpot_s[m]))))
        stable &= bool(summarise_batched(times, engine, window, (0.5,), SLO())["stable"])
    rows_a = np.array(rows)
    half = stats.t.ppf(0.975, replications - 1) * rows_a.std(axis=0, ddof=1) \
        / math.sqrt(replications)
    return {"mean_ttft_s": float(rows_a[:, 0].mean()), "ttft_half_s": float(half[0]),
            "mean_tpot_s": float(rows_a[:, 1].mean()), "tpot_half_s": float(half[1]),
            "stable": stable}


def evaluate(reference: dict) -> list[dict[str, object]]:
    """Every simulated point of ``reference`` with today's forms: the form's values at the
    point's rate, the relative errors, and whether each mean lies inside the simulation's
    95 % interval widened by 5 % of the simulated mean (``agree_*``)."""
    rows = []
    for case_ref in reference["cases"]:
        case = _case(case_ref)
        for point in case_ref["points"]:
            ttft, tpot = case.closed_form(point["rate_per_s"])
            row = {"case": case.key, "profile": case.profile,
                   "architecture": case.architecture, "sigma": case.sigma,
                   "load": point["load"], "rate_per_s": point["rate_per_s"],
                   "stable": point["stable"]}
            for name, value in (("ttft", ttft), ("tpot", tpot)):
                sim, half = point[f"mean_{name}_s"], point[f"{name}_half_s"]
                row[f"err_{name}"] = value / sim - 1.0 if math.isfinite(value) else math.inf
                row[f"agree_{name}"] = bool(abs(value - sim) <= half + 0.05 * sim)
            rows.append(row)
    return rows


def knees(reference: dict) -> list[dict[str, object]]:
    """Each case's predicted limit against the simulated knee: ``holds`` when the
    simulation is stable at 0.95 of the limit and unstable at 1.05."""
    return [{"case": _case(c).key, "limit_rps": c["limit_rps"],
             "stable_below": c["knee"]["stable_at_0.95"],
             "stable_above": c["knee"]["stable_at_1.05"],
             "holds": c["knee"]["stable_at_0.95"] and not c["knee"]["stable_at_1.05"]}
            for c in reference["cases"]]


def summary_markdown(reference: dict) -> str:
    """The grid's verdict as Markdown: per profile and architecture, the share of points
    below 0.8 of the limit with mean TTFT (TPOT) within 10 %, the worst errors there and
    above, and the knees that hold."""
    rows = evaluate(reference)
    knee = {k["case"]: k["holds"] for k in knees(reference)}
    out = ["| profile | architecture | TTFT within 10 % (load < 0.8) | TPOT within 10 % "
           "(load < 0.8) | "
           "worst TTFT, TPOT (load < 0.8) | worst TTFT, TPOT (0.8 to 0.95) | knee within 5 % |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for profile in PROFILES:
        for arch in ARCHITECTURES:
            mine = [r for r in rows if r["profile"] == profile and r["architecture"] == arch]
            low = [r for r in mine if r["load"] < 0.8]
            high = [r for r in mine if r["load"] >= 0.8]

            def worst(rs, key):
                return max((r[key] for r in rs), key=abs, default=math.nan)

            share = np.mean([abs(r["err_ttft"]) <= 0.10 for r in low])
            share_p = np.mean([abs(r["err_tpot"]) <= 0.10 for r in low])
            holds = sum(knee[k] for k in knee if k.startswith(f"{profile}|{arch}|"))
            out.append(f"| {profile} | {arch} | {share:.0%} of {len(low)} | "
                       f"{share_p:.0%} | {worst(low, 'err_ttft'):+.1%}, "
                       f"{worst(low, 'err_tpot'):+.1%} | {worst(high, 'err_ttft'):+.1%}, "
                       f"{worst(high, 'err_tpot'):+.1%} | {holds} of {len(SIGMAS)} |")
    return "\n".join(out)
