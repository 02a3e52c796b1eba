"""Open-loop arrival processes against their exact laws (seeded, stated tolerances)."""

import numpy as np
import pytest

from simulation.requests import arrivals, generate_requests, iter_arrivals
from simulation.runner import simulate
from spec import ArrivalProcess, config_from_mapping

TOKENS = config_from_mapping({}).workload


def workload(**arrival):
    rate = arrival.pop("rate", 2.0)
    from spec import Workload

    return Workload(rate, TOKENS.prompt_tokens, TOKENS.output_tokens, ArrivalProcess(**arrival))


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.5])
def test_gamma_gaps_have_the_asked_mean_and_cv(cv):
    """n = 200,000 gaps: the sample mean is within 4 standard errors of 1/rate, the sample
    cv within 4 % of cv (the gaps are i.i.d. Gamma, so both errors are known)."""
    t = arrivals(np.random.default_rng(1), workload(process="gamma", cv=cv, rate=4.0), 50_000)
    gaps = np.diff(np.concatenate([[0.0], t]))
    n = len(gaps)
    assert n > 190_000
    se = cv * 0.25 / np.sqrt(n)
    assert abs(gaps.mean() - 0.25) < 4 * se
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.04)


def test_mmpp_rate_and_burstiness():
    """Mean rate within 3 % over 20,000 s (about 330 calm+burst cycles of 60 s); counts in
    10 s windows are overdispersed (index of dispersion well above Poisson's 1), and the
    long-run dispersion matches the two-state MMPP's exact value within 25 %."""
    a = dict(process="mmpp", burst_ratio=5.0, burst_fraction=0.2, burst_cycle_s=60.0)
    w = workload(rate=3.0, **a)
    t = arrivals(np.random.default_rng(2), w, 20_000)
    assert len(t) / 20_000 == pytest.approx(3.0, rel=0.03)
    assert np.all(np.diff(t) >= 0) and t[-1] < 20_000
    counts = np.bincount((t // 10).astype(int), minlength=2000)
    idc = counts.var() / counts.mean()
    # exact index of dispersion of counts in windows of length T for a 2-state MMPP:
    # 1 + 2 f(1-f) (l1-l0)^2 / (lam s) * (1 - (1 - e^{-sT}) / (sT)), s = up + down
    calm, burst, up, down = w.arrival.mmpp_rates(3.0)
    f, s_, T = 0.2, up + down, 10.0
    exact = 1 + 2 * f * (1 - f) * (burst - calm) ** 2 / (3.0 * s_) * (
        1 - (1 - np.exp(-s_ * T)) / (s_ * T))
    assert idc > 3
    assert idc == pytest.approx(exact, rel=0.25)


def test_poisson_stream_is_unchanged_and_pieces_do_not_matter():
    """The Poisson path draws exactly as before (the seed model's numbers stay put), and
    an MMPP stream cut into small pieces is the same stream."""
    from simulation.requests import poisson_arrivals

    w = workload(rate=5.0)
    np.testing.assert_array_equal(arrivals(np.random.default_rng(3), w, 1000.0),
                                  poisson_arrivals(np.random.default_rng(3), 5.0, 1000.0))
    m = workload(rate=5.0, process="mmpp")
    whole = arrivals(np.random.default_rng(4), m, 2000.0)
    pieces = np.concatenate(list(iter_arrivals(np.random.default_rng(4), m, 2000.0, block=50)))
    np.testing.assert_array_equal(whole, pieces)


def test_seed_model_runs_gamma_arrivals_streamed_or_not():
    cfg = config_from_mapping({"arrival": {"process": "gamma", "cv": 2.0},
                               "sim_seconds": 2000, "warmup_seconds": 200})
    kept = simulate(cfg).summary
    streamed = simulate(cfg, keep_requests=False).summary
    assert kept["n_requests"] == streamed["n_requests"] == len(
        generate_requests(cfg.workload, 2000, np.random.SeedSequence(42).spawn(1)[0]))
    assert kept["mean_ttft_s"] == pytest.approx(streamed["mean_ttft_s"], rel=1e-12)
