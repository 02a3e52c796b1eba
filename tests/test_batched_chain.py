"""A prefill instance that batches everything waiting, fixed prompts, Poisson arrivals:
the mean TTFT of the exact embedded Markov chain (ANALYTIC_NOTES, batched item 1), solved
in tests/reference.py independently of the code under test, must lie in the
simulation's confidence interval.

Chain on batch sizes: after a batch of ``x`` (duration ``S_x = a + x beta``), the next
batch holds the ``A ~ Poisson(lam S_x)`` arrivals during it, or one request after an
idle period if ``A = 0``. Per batch, its ``A`` followers wait the residual (total
``lam S_x^2 / 2``) and then ``a + A beta``; so with the stationary law ``pi``:

    E[TTFT] = sum_x pi(x) [lam S_x (S_x/2 + a + beta (1 + lam S_x)) + e^{-lam S_x} (a + beta)]
              / sum_x pi(x) [lam S_x + e^{-lam S_x}]
"""

import numpy as np
import pytest
from scipy import stats

from simulation.batched import simulate_batched
from simulation.requests import generate_requests
from spec import ArrivalProcess, BatchedColocated, Instance, TokenDist, Workload, load_profile
from tests.reference import chain_mean_ttft

L = 512


@pytest.mark.parametrize("lam", [6.0, 14.0])  # load lam beta = 0.32 and 0.76
def test_prefill_batching_matches_the_exact_chain(lam):
    prof = load_profile("distserve/opt-13b_tp1")
    a, b, c = prof.coeffs[:3]
    beta = b * L + c * L * L
    exact = chain_mean_ttft(lam, a, beta)
    # whole prompts, no token or sequence cap, no KV limit, one output token: every step
    # is a prefill of everything waiting, and its end is each request's first token
    inst = Instance(profile="distserve/opt-13b_tp1", policy="prefill_priority",
                    max_num_batched_tokens=10**8, max_num_seqs=10**6,
                    kv_capacity_tokens=10**9)
    cluster = BatchedColocated(instances=1, instance=inst, first_token="prefill")
    wl = Workload(lam, TokenDist.fixed(L), TokenDist.fixed(1), ArrivalProcess())
    means = []
    for ss in np.random.SeedSequence(2024).spawn(16):
        req = generate_requests(wl, 4000.0, ss)
        times, _ = simulate_batched(req, cluster, (100.0, 4000.0))
        means.append(times.ttft_s[times.measured].mean())
    means = np.array(means)
    half = stats.t.ppf(0.995, len(means) - 1) * means.std(ddof=1) / np.sqrt(len(means))
    assert half < 0.015 * means.mean(), "the interval is too wide to test anything"
    assert abs(means.mean() - exact) <= half, (
        f"simulated {means.mean():.5f} +- {half:.5f} s (99 %), chain {exact:.5f} s")
