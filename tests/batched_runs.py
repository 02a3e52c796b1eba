"""The simulated runs the batched closed-form tests compare against: Poisson arrivals at
one rate through the exact fast engine, each replication's measured requests."""

from collections.abc import Iterator

import numpy as np

from simulation.batched_fast import simulate_batched_fast
from simulation.requests import generate_requests
from spec import ArrivalProcess, TokenDist, Workload


def measured_runs(cluster, rate_per_s: float, prompt: TokenDist, output: TokenDist, *,
                  seed: int, reps: int, requests: int
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``reps`` replications (streams spawned from ``SeedSequence(seed)``) of
    ``requests / rate_per_s`` seconds, warm-up a tenth: each one's measured TTFT, TPOT
    and E2E (s; TPOT NaN for one-token requests)."""
    wl = Workload(rate_per_s, prompt, output, ArrivalProcess())
    span = requests / rate_per_s
    for ss in np.random.SeedSequence(seed).spawn(reps):
        t, _ = simulate_batched_fast(generate_requests(wl, span, ss), cluster,
                                     (span / 10, span))
        m = t.measured
        yield t.ttft_s[m], t.tpot_s[m], t.e2e_s[m]
