"""Control-variate intervals (``simulation.metrics.control_variate_interval``): their
coverage where the answer is known, and the fidelity grid's use of them at sigma 1.5,
where an M/G/1 queue's mean TTFT is exact (Pollaczek-Khinchine)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

import spec
from simulation import simulate
from simulation.metrics import confidence_interval, control_variate_interval
from tests import reference as ref
from validate import fidelity as fid


def test_without_controls_it_is_the_student_t_interval():
    y = np.random.default_rng(5).normal(3.0, 2.0, 12)
    est, lo, hi = control_variate_interval(y, np.empty((12, 0)), np.empty(0))
    assert est == pytest.approx(y.mean(), rel=1e-13)
    assert (lo, hi) == pytest.approx(confidence_interval(y), rel=1e-12)
    assert (lo, hi) == pytest.approx(ref.t_interval(y, 0.95), rel=1e-12)


def test_an_output_linear_in_its_controls_is_exact():
    """``Y = 3 + 2 (C1 - 1) - 0.5 (C2 + 2)`` with no noise: the intercept is 3 exactly
    and the interval has no width, wherever the sampled controls fall."""
    c = np.random.default_rng(6).normal([1.0, -2.0], [1.0, 3.0], size=(8, 2)) + [0.4, 1.0]
    y = 3.0 + 2.0 * (c[:, 0] - 1.0) - 0.5 * (c[:, 1] + 2.0)
    est, lo, hi = control_variate_interval(y, c, np.array([1.0, -2.0]))
    assert est == pytest.approx(3.0, abs=1e-12)
    assert hi - lo == pytest.approx(0.0, abs=1e-9)
    assert y.mean() != pytest.approx(3.0, abs=0.1)  # the plain mean is off: controls matter


def test_coverage_is_the_nominal_level_with_few_degrees_of_freedom():
    """4000 trials of ``R = 6`` replications with ``q = 2`` controls (3 degrees of
    freedom), ``Y = 1 + (C1 - mu1) + 2 (C2 - mu2) + e``, jointly normal (where the
    interval is exact). The share of intervals holding 1 lies within 0.95 +- 0.012 (3.5
    binomial standard errors). The t quantile on ``R - 1`` degrees of freedom would give
    about 0.90; the plain interval's variance ``s^2 / R`` about 0.92."""
    rng = np.random.default_rng(20261124)
    trials, r = 4000, 6
    mu = np.array([0.5, -1.0])
    hits = 0
    for _ in range(trials):
        c = rng.normal(mu, 1.0, size=(r, 2))
        y = 1.0 + (c[:, 0] - mu[0]) + 2.0 * (c[:, 1] - mu[1]) + rng.normal(0.0, 0.5, r)
        _, lo, hi = control_variate_interval(y, c, mu)
        hits += lo <= 1.0 <= hi
    assert abs(hits / trials - 0.95) <= 3.5 * math.sqrt(0.95 * 0.05 / trials)


def test_too_few_replications_or_non_finite_values_give_nan():
    c = np.ones((3, 2))
    assert all(math.isnan(v) for v in control_variate_interval([1.0, 2.0, 3.0], c,
                                                               np.zeros(2)))
    y = [1.0, 2.0, math.inf, 4.0, 5.0]
    assert all(math.isnan(v) for v in control_variate_interval(y, np.zeros((5, 1)),
                                                               np.zeros(1)))


def _exact_mg1_mean_ttft_s(config: spec.SimConfig) -> float:
    """Pollaczek-Khinchine for one GPU, ``S = P / r_p + O / r_d``, from the token pmfs
    (not the moments the code uses): ``E[W] + E[P] / r_p + 1 / r_d``."""
    wl, cl = config.workload, config.cluster_mono
    (mp, vp), (mo, vo) = (ref.pmf_moments(d) for d in (wl.prompt_tokens, wl.output_tokens))
    rp, rd = cl.prefill_tokens_per_s, cl.decode_tokens_per_s
    es = mp / rp + mo / rd
    cs2 = (vp / rp**2 + vo / rd**2) / es**2
    return ref.pk_mean_wait(wl.arrival_rate_per_s, es, cs2) + mp / rp + 1.0 / rd


@pytest.mark.parametrize("load", [0.5, 0.8])
def test_grid_estimator_holds_the_exact_mg1_mean_at_sigma_15(load):
    """One GPU, token sigma 1.5 (service SCV about 8), run as the fidelity grid runs a
    point: the control-variate 99.9 % interval holds the exact mean TTFT, and its 95 %
    interval (the one the grid stores) is inside the judging width (half-width at most
    2.5 %, half the 5 % tolerance), which the plain replication mean's misses at these
    run sizes."""
    point = fid.GridPoint("mono", 1, 0, load, 1.5)
    config, cluster = fid.point_config(spec.default_config(), point)
    n = fid.requests_per_replication(point.load, fid._bottleneck_scv(config, point))
    sim_s = n / config.workload.arrival_rate_per_s
    config = replace(config, random_seed=11, replications=fid.REPLICATIONS,
                     sim_seconds=1.1 * sim_s, warmup_seconds=0.1 * sim_s)
    reps = simulate(config, cluster, keep_requests=False).replications
    controls = fid.service_controls(config, mono=True)
    c = np.array([[r[k] for k in controls] for r in reps])
    y = [r["mean_ttft_s"] for r in reps]
    exact = _exact_mg1_mean_ttft_s(config)
    mu = np.array(list(controls.values()))
    est, lo, hi = control_variate_interval(y, c, mu, 0.999)
    assert lo <= exact <= hi, (exact, est, lo, hi)
    _, lo95, hi95 = control_variate_interval(y, c, mu)
    plain = confidence_interval(np.array(y))
    assert (hi95 - lo95) / 2 / exact <= 0.025 < (plain[1] - plain[0]) / 2 / exact
