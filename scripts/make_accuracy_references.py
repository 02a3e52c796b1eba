"""Long simulations of M/G/c stations: the references the closed forms' published accuracy
is tested against (``tests/test_published_accuracy.py``).

Each point is a monolithic cluster of ``c`` GPUs whose service is a prompt of lognormal
length (so ``S = P / r_p``, output one token at a speed that makes its time negligible),
Poisson arrivals at load ``rho``. The compiled engine runs ``REPLICATIONS`` independent
streams (seeds spawned from one root) of ``SIM_SECONDS`` each; the first 10 % of each is
warm-up. Stored per point: the exact service moments (from the token pmf), and for the
mean wait, ``P(W > 0)`` and the P90 and P99 of the wait, the mean over replications and
the half-width of its 95 % Student-t interval.

Run (about a minute on 2 cores)::

    python scripts/make_accuracy_references.py   # writes tests/data/accuracy_reference.json
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import spec  # noqa: E402
from simulation import confidence_interval, generate_requests, run_requests  # noqa: E402
from tests.reference import pmf_moments  # noqa: E402

OUT = ROOT / "tests" / "data" / "accuracy_reference.json"
SEED = 20261124
REPLICATIONS = 10
SERVERS = (1, 4, 16)
SIGMAS = (0.5, 1.0, 1.4)  # service cs2 about 0.28, 1.7 and 6.1
RHOS = (0.5, 0.8)
PREFILL_TOKENS_PER_S = 1000.0
MEAN_PROMPT = 1000.0  # E[S] about 1 s
DECODE_TOKENS_PER_S = 1e9  # the one output token takes 1 ns
SIM_SECONDS = 160_000.0  # per replication, in units of E[S]: 160,000 c requests


def _mean_and_half_width(values: list[float]) -> tuple[float, float]:
    lo, hi = confidence_interval(np.asarray(values), 0.95)
    return (lo + hi) / 2.0, (hi - lo) / 2.0


def point(c: int, sigma: float, rho: float, seed: np.random.SeedSequence) -> dict:
    mu = math.log(MEAN_PROMPT) - sigma**2 / 2
    prompt = spec.TokenDist.lognormal(mu, sigma)
    mean_p, var_p = pmf_moments(prompt)
    es = mean_p / PREFILL_TOKENS_PER_S + 1 / DECODE_TOKENS_PER_S
    cs2 = var_p / PREFILL_TOKENS_PER_S**2 / es**2
    rate = rho * c / es
    wl = spec.Workload(rate, prompt, spec.TokenDist.fixed(1))
    cluster = spec.MonolithicCluster(c, PREFILL_TOKENS_PER_S, DECODE_TOKENS_PER_S)
    sims = {"mean_wait_s": [], "delay_probability": [], "p90_wait_s": [], "p99_wait_s": []}
    seconds = SIM_SECONDS * es
    for child in seed.spawn(REPLICATIONS):
        rec = run_requests(generate_requests(wl, seconds, child), cluster,
                           warmup_s=0.1 * seconds)
        w = rec.prefill_wait_s[rec.measured]
        sims["mean_wait_s"].append(float(w.mean()))
        sims["delay_probability"].append(float(np.mean(w > 0)))
        sims["p90_wait_s"].append(float(np.quantile(w, 0.9)))
        sims["p99_wait_s"].append(float(np.quantile(w, 0.99)))
    out = {"servers": c, "sigma": sigma, "rho": rate * es / c, "arrival_rate_per_s": rate,
           "service_mean_s": es, "service_scv": cs2}
    for name, values in sims.items():
        out[name], out[f"{name}_ci95"] = _mean_and_half_width(values)
    return out


def main() -> int:
    root = np.random.SeedSequence(SEED)
    grid = list(itertools.product(SERVERS, SIGMAS, RHOS))
    points = []
    for (c, sigma, rho), seed in zip(grid, root.spawn(len(grid)), strict=True):
        points.append(point(c, sigma, rho, seed))
        p = points[-1]
        print(f"M/G/{c:<2} cs2 {p['service_scv']:4.2f} rho {rho:.1f}: E[W] "
              f"{p['mean_wait_s']:.4f} +- {p['mean_wait_s_ci95']:.4f} s", flush=True)
    data = {"generated_by": "scripts/make_accuracy_references.py", "seed": SEED,
            "replications": REPLICATIONS, "sim_seconds_in_service_means": SIM_SECONDS,
            "warmup_fraction": 0.1, "confidence": 0.95, "points": points}
    OUT.parent.mkdir(exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(OUT)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
