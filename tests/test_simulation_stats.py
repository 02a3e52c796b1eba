"""The simulator against exact queueing results, inside t-intervals from seeded
independent replications.

Each replication is an independent stream (SeedSequence.spawn); the first 10 % of the
horizon is warm-up. The module makes 12 interval checks; each uses a 99.9 % interval, so
by Bonferroni a correct simulator fails any of them with probability at most 1.2 % (the
seeds are fixed, so the outcome is deterministic). Each check also asserts that its
interval is narrow (half-width below 10 % of the exact value), so passing means something.
"""

import math

import numpy as np
import pytest

from simulation import Requests, simulate, simulate_trace
from spec import DisaggregatedCluster, MonolithicCluster, SimConfig, TokenDist, Workload
from tests.reference import erlang_c, md1_mean_wait, mmc_mean_wait, t_interval

REPS = 10
CONFIDENCE = 0.999
MAX_HALF_WIDTH = 0.10


def _check_inside(exact, samples, what):
    lo, hi = t_interval(samples, CONFIDENCE)
    assert lo <= exact <= hi, f"{what}: exact {exact:.5f} outside 99.9% CI [{lo:.5f}, {hi:.5f}]"
    assert (hi - lo) / 2 < MAX_HALF_WIDTH * exact, \
        f"{what}: CI [{lo:.5f}, {hi:.5f}] too wide to test"


def _exponential_trace(rng, rate, horizon_s, mean_service_s, mean_decode_s=None):
    """Poisson arrivals; prompt tokens = an exponential service in seconds (r_p = 1);
    output tokens exponential too when a decode mean is given, else negligible."""
    n = rng.poisson(rate * horizon_s)
    arrivals = np.sort(rng.uniform(0.0, horizon_s, n))
    prompt = rng.exponential(mean_service_s, n)
    output = rng.exponential(mean_decode_s, n) if mean_decode_s else np.full(n, 1e-9)
    return Requests(arrivals, prompt, output)


def _replicate(fn):
    seeds = np.random.SeedSequence(20261122).spawn(REPS)
    return [fn(np.random.default_rng(s)) for s in seeds]


def _mmc_runs(servers: int, rate: float, horizon: float, keys: tuple[str, ...],
              decode_tokens_per_s: float = 1.0) -> np.ndarray:
    """``REPS x len(keys)`` summary values of M/M/``servers`` traces (exponential prompts
    of mean 1 s at 1 token/s), warm-up the first 10 % of each."""
    cluster = MonolithicCluster(servers, prefill_tokens_per_s=1.0,
                                decode_tokens_per_s=decode_tokens_per_s)

    def one(rng):
        res = simulate_trace(_exponential_trace(rng, rate, horizon, 1.0), cluster,
                             warmup_s=0.1 * horizon)
        return [res.summary[k] for k in keys]

    return np.array(_replicate(one))


@pytest.mark.parametrize(("servers", "rho"), [
    pytest.param(1, 0.7, id="M/M/1 rho 0.7"),
    pytest.param(4, 0.8, id="M/M/4 rho 0.8"),
])
def test_mmc_mean_wait_and_delay_probability(servers, rho):
    rate, es = rho * servers, 1.0
    runs = _mmc_runs(servers, rate, 30_000.0 / servers,  # about 20k requests a replication
                     ("mean_prefill_wait_s", "prob_wait_prefill"))
    _check_inside(mmc_mean_wait(rate, es, servers), runs[:, 0], "E[W]")
    _check_inside(erlang_c(servers, rate * es), runs[:, 1], "P(W > 0)")


def test_mmc_wait_quantiles_follow_the_exact_law():
    """M/M/4 at rho 0.8: ``P(W > t) = C exp(-(c mu - lam) t)``, so the q-quantile is
    ``ln(C / (1 - q)) / (c mu - lam)`` for ``q > 1 - C``. The simulated P50 and P99 waits
    (replication means of sample quantiles, 240k requests each) hold it inside their
    99.9 % intervals; a quantile taken at a slightly wrong probability, or of the wrong
    column, does not."""
    servers, rate, es = 4, 3.2, 1.0
    runs = _mmc_runs(servers, rate, 300_000.0 / servers,  # about 240k requests each
                     ("p50_prefill_wait_s", "p99_prefill_wait_s"))
    C = erlang_c(servers, rate * es)
    for col, q in enumerate((0.5, 0.99)):
        exact = math.log(C / (1 - q)) / (servers / es - rate)
        _check_inside(exact, runs[:, col], f"M/M/4 wait quantile {q}")


def test_mm1_ttft_quantiles_are_the_sojourn_law():
    """M/M/1 at rho 0.7 with a negligible decode: TTFT is the sojourn time, exponential of
    rate ``mu - lam`` (Kleinrock, Queueing Systems I, eq. 3.24): its q-quantile is
    ``-ln(1 - q) / (mu - lam)``. Simulated P50, P90, P99 TTFT inside their intervals."""
    rate, es = 0.7, 1.0
    runs = _mmc_runs(1, rate, 300_000.0, ("p50_ttft_s", "p90_ttft_s", "p99_ttft_s"),
                     decode_tokens_per_s=1e12)  # about 210k requests a replication
    for col, q in enumerate((0.5, 0.9, 0.99)):
        exact = -math.log(1 - q) / (1 / es - rate)
        _check_inside(exact, runs[:, col], f"M/M/1 TTFT quantile {q}")


def test_burke_tandem_decode_pool_is_mmc():
    """M/M/2 prefill then ./M/3 decode: by Burke's theorem the decode pool sees Poisson
    arrivals, so both waits are Erlang C exactly."""
    rate, horizon = 1.2, 25_000.0
    cluster = DisaggregatedCluster(2, 3, prefill_tokens_per_s=1.0, decode_tokens_per_s=1.0)
    es_p, es_d = 1.0, 2.0  # rho 0.6 at prefill, 0.8 at decode

    def one(rng):
        res = simulate_trace(_exponential_trace(rng, rate, horizon, es_p, es_d), cluster,
                             warmup_s=0.1 * horizon)
        return res.summary["mean_prefill_wait_s"], res.summary["mean_decode_wait_s"]

    runs = np.array(_replicate(one))
    for col, (c, es, name) in enumerate([(2, es_p, "prefill"), (3, es_d, "decode")]):
        _check_inside(mmc_mean_wait(rate, es, c), runs[:, col], f"{name} E[W]")


def test_md1_prefill_matches_distserve_formula():
    """Fixed prompts on one prefill GPU: DistServe's M/D/1 mean TTFT
    ``D + lam D^2 / (2 (1 - lam D))`` plus one decode token, through the synthetic path."""
    d_s, rate = 0.1, 7.0  # rho 0.7
    decode_rate = 1000.0
    cfg = SimConfig(
        mode="disagg", sim_seconds=3000.0, warmup_seconds=300.0, random_seed=7,
        replications=REPS,
        workload=Workload(rate, TokenDist.fixed(800), TokenDist.fixed(1)),
        cluster_mono=MonolithicCluster(1, 8000.0, decode_rate),
        cluster_disagg=DisaggregatedCluster(1, 64, 8000.0, decode_rate),
    )
    res = simulate(cfg)
    for rec in res.records:  # 64 decode GPUs held 1 ms each: nobody waits for decode
        assert rec.decode_wait_s.max() == 0.0
    exact = d_s + md1_mean_wait(rate, d_s) + 1.0 / decode_rate
    samples = [r["mean_ttft_s"] for r in res.replications]
    _check_inside(exact, samples, "M/D/1 mean TTFT")
    # the result's own CI (95 %) is computed the same way and is narrower
    lo, hi = t_interval(samples, CONFIDENCE)
    c_lo, c_hi = res.ci["mean_ttft_s"]
    assert lo < c_lo < c_hi < hi


def test_little_law_and_utilisation_match_offered_load():
    """Little's law L = lam W and utilisation = rho hold in a long stable run (within 3 %)."""
    cfg = SimConfig(mode="mono", sim_seconds=20_000.0, warmup_seconds=1000.0, random_seed=3,
                    workload=Workload(6.0, TokenDist("log", mean=6.0, sigma=0.9, min_value=8),
                                      TokenDist("log", mean=6.0, sigma=1.1, min_value=16)),
                    cluster_mono=MonolithicCluster(4, 8000.0, 2000.0),
                    cluster_disagg=DisaggregatedCluster(2, 2, 8000.0, 2000.0))
    s = simulate(cfg).summary
    assert s["utilisation_gpu"] == pytest.approx(s["offered_load_gpu"], rel=0.03)
    assert s["mean_queue_len_gpu"] == pytest.approx(6.0 * s["mean_prefill_wait_s"], rel=0.03)
    assert math.isclose(s["stable"], 1.0)
