"""spec: exact conversions, exact token moments, validation messages, YAML loading."""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import spec
from spec import DisaggregatedCluster, MonolithicCluster, SimConfig, TokenDist, Workload

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


# --------------------------------------------------------------------- conversions
def test_real_mean_std_converts_exactly():
    d = TokenDist("real_mean_std", mean=1000.0, std=500.0)
    # the continuous lognormal with (mu, sigma) has exactly the given mean and std
    mean = math.exp(d.mu + d.sigma_log**2 / 2)
    std = mean * math.sqrt(math.expm1(d.sigma_log**2))
    assert mean == pytest.approx(1000.0, rel=1e-12)
    assert std == pytest.approx(500.0, rel=1e-12)


def test_p50_p90_converts_exactly():
    d = TokenDist("p50_p90", p50=400.0, p90=1500.0)
    dist = stats.lognorm(s=d.sigma_log, scale=math.exp(d.mu))
    assert dist.ppf(0.5) == pytest.approx(400.0, rel=1e-12)
    assert dist.ppf(0.9) == pytest.approx(1500.0, rel=1e-12)


def test_log_mode_is_identity():
    d = TokenDist("log", mean=6.0, sigma=0.9)
    assert (d.mu, d.sigma_log) == (6.0, 0.9)


# --------------------------------------------------------------------- exact moments
@pytest.mark.parametrize("dist", [
    pytest.param(TokenDist("log", mean=6.0, sigma=0.9, min_value=8), id="prompt default"),
    pytest.param(TokenDist("log", mean=6.0, sigma=1.1, min_value=16), id="output default"),
    pytest.param(TokenDist("log", mean=1.0, sigma=0.5, min_value=3), id="heavy clipping"),
    pytest.param(TokenDist("p50_p90", p50=50.0, p90=200.0), id="wide p50_p90"),
])
def test_moments_match_direct_summation(dist):
    """Against an independent brute force: P(N = k) from scipy's lognorm survival function
    (accurate in the upper tail), summed far past where the terms matter."""
    ln = stats.lognorm(s=dist.sigma_log, scale=math.exp(dist.mu))
    m = dist.min_value
    k = np.arange(m, int(ln.isf(1e-20)) + 2)
    p = ln.sf(k - 0.5) - ln.sf(k + 0.5)
    p[0] = ln.cdf(m + 0.5)
    for order in (1, 2):  # past isf(1e-20) these moments hold < 1e-12 of their mass
        brute = float(np.sum(k.astype(float) ** order * p))
        assert dist.raw_moment(order) == pytest.approx(brute, rel=1e-9), f"order {order}"


def test_closed_form_tail_matches_direct_summation(monkeypatch):
    """Cap the explicit sum at 300 terms so the closed-form tail (partial moments with
    Sheppard's correction) carries most of the upper mass; it must still be exact."""
    import spec.tokens

    monkeypatch.setattr(spec.tokens, "_MAX_TERMS", 300)
    dist = TokenDist("log", mean=5.0, sigma=0.8, min_value=4)
    assert dist.pmf()[1].sum() < 0.99  # the tail really is large here
    ln = stats.lognorm(s=0.8, scale=math.exp(5.0))
    k = np.arange(4, int(ln.isf(1e-24)) + 2)
    p = ln.sf(k - 0.5) - ln.sf(k + 0.5)
    p[0] = ln.cdf(4.5)
    for order in (1, 2, 3):
        brute = float(np.sum(k.astype(float) ** order * p))
        assert dist.raw_moment(order) == pytest.approx(brute, rel=1e-9), f"order {order}"


@pytest.mark.parametrize("dist", [
    pytest.param(TokenDist("log", mean=6.0, sigma=1.1, min_value=16), id="output default"),
    pytest.param(TokenDist("log", mean=6.0, sigma=0.05), id="narrow"),
    pytest.param(TokenDist("log", mean=1.0, sigma=0.5, min_value=3), id="heavy clipping"),
    pytest.param(TokenDist("log", mean=8.0, sigma=2.0), id="wide"),
])
def test_short_head_equals_the_full_explicit_sum(monkeypatch, dist):
    """The moments stop the explicit sum where the Euler-Maclaurin remainder bound is
    below 1e-15 of the moment; with the bound switched off (sum to the 7.5-sigma cut)
    they must agree to 1e-13."""
    import spec.tokens

    short = [dist._raw_moment_uncached(r) for r in (1, 2, 3, 4)]
    assert all(dist._moment_cut(r) <= dist._cut() for r in (1, 2, 3, 4))
    monkeypatch.setattr(spec.tokens, "_EM_REL", 0.0)
    assert all(dist._moment_cut(r) == dist._cut() for r in (1, 2, 3, 4))
    full = [dist._raw_moment_uncached(r) for r in (1, 2, 3, 4)]
    assert short == pytest.approx(full, rel=1e-13)


def test_normal_cdf_paths_agree():
    """The short-array path (C erfc) and the long one (scipy ndtr) give the same Phi
    down to Phi(-25) ~ 3e-138 (deeper, scipy underflows to 0 first)."""
    from scipy.special import ndtr

    from spec.tokens import _SCIPY_FROM, normal_cdf

    z = np.linspace(-25.0, 25.0, _SCIPY_FROM - 1)
    # Phi's relative condition number in the lower tail is about z^2 (625 at -25), so
    # each library is within about 1e-13 of the 40-digit value there; allow twice that
    assert normal_cdf(z) == pytest.approx(ndtr(z), rel=3e-13, abs=0.0)


def test_samples_agree_with_exact_moments():
    """2e6 draws: the sample mean lies within 4 standard errors of the exact mean."""
    d = TokenDist("log", mean=6.0, sigma=1.1, min_value=16)
    x = d.sample(np.random.default_rng(2024), 2_000_000)
    se = math.sqrt(d.var_tokens() / len(x))
    assert abs(x.mean() - d.mean_tokens()) < 4 * se
    assert x.min() >= 16 and x.dtype == np.int64
    # the clipped mass: P(N = 16) = P(X < 16.5) exactly
    p16 = stats.lognorm(s=1.1, scale=math.exp(6.0)).cdf(16.5)
    assert abs((x == 16).mean() - p16) < 4 * math.sqrt(p16 * (1 - p16) / len(x))


def test_fixed_length():
    d = TokenDist.fixed(512)
    values, probs = d.pmf()
    assert values.tolist() == [512] and probs.tolist() == [1.0]
    assert d.var_tokens() == 0.0
    assert np.all(d.sample(np.random.default_rng(0), 100) == 512)


# --------------------------------------------------------------------- validation
def _workload(**kw):
    args = dict(arrival_rate_per_s=2.0, prompt_tokens=TokenDist.fixed(100),
                output_tokens=TokenDist.fixed(10))
    args.update(kw)
    return Workload(**args)


BAD = [
    pytest.param(lambda: _workload(arrival_rate_per_s=0.0), "arrival.rate_per_s = 0.0: must be > 0",
                 id="zero rate"),
    pytest.param(lambda: _workload(arrival_rate_per_s=-1.0), "arrival.rate_per_s = -1.0",
                 id="negative rate"),
    pytest.param(lambda: _workload(arrival_rate_per_s=float("nan")), "arrival.rate_per_s = nan",
                 id="NaN rate"),
    pytest.param(lambda: MonolithicCluster(0, 8000, 2000), "cluster_mono.num_gpus = 0: must be a "
                 "whole number in [1, 1000000]", id="zero GPUs"),
    pytest.param(lambda: MonolithicCluster(2.5, 8000, 2000), "cluster_mono.num_gpus = 2.5",
                 id="fractional GPUs"),
    pytest.param(lambda: MonolithicCluster(4, -8000, 2000),
                 "cluster_mono.prefill_tokens_per_s = -8000", id="negative prefill rate"),
    pytest.param(lambda: DisaggregatedCluster(2, 0, 8000, 2000),
                 "cluster_disagg.decode_gpus = 0", id="zero decode GPUs"),
    pytest.param(lambda: DisaggregatedCluster(2, 2, 8000, float("inf")),
                 "cluster_disagg.decode_tokens_per_s = inf", id="infinite decode rate"),
    pytest.param(lambda: DisaggregatedCluster(2, 2, 8000, 2000, -1e-6),
                 "cluster_disagg.kv_transfer_s_per_token = -1e-06: must be >= 0",
                 id="negative transfer"),
    pytest.param(lambda: TokenDist("real_mean_std", mean=100.0, std=0.0),
                 "tokens.std = 0.0: must be > 0", id="std zero"),
    pytest.param(lambda: TokenDist("real_mean_std", mean=100.0, std=-3.0),
                 "tokens.std = -3.0: must be > 0", id="std negative"),
    pytest.param(lambda: TokenDist("p50_p90", p50=500.0, p90=500.0),
                 "tokens.p90 = 500.0: must be > tokens.p50 = 500.0", id="p90 equal p50"),
    pytest.param(lambda: TokenDist("p50_p90", p50=500.0, p90=100.0),
                 "tokens.p90 = 100.0: must be > tokens.p50", id="p90 below p50"),
    pytest.param(lambda: TokenDist("lognormal", mean=6.0, sigma=1.0),
                 "tokens.mode = 'lognormal': must be one of log, real_mean_std, p50_p90",
                 id="unknown token mode"),
    pytest.param(lambda: TokenDist("log", mean=6.0, sigma=1.0, std=3.0),
                 "field(s) std do not apply to mode 'log'", id="field of another mode"),
    pytest.param(lambda: TokenDist("log", mean=6.0), "tokens.sigma is missing",
                 id="missing sigma"),
    pytest.param(lambda: TokenDist("log", mean=6.0, sigma=1.0, min_value=0),
                 "tokens.min_value = 0: must be a whole number >= 1", id="min_value zero"),
    pytest.param(lambda: SimConfig("mono", 100.0, 100.0, 1, _workload(),
                                   MonolithicCluster(1, 1, 1), DisaggregatedCluster(1, 1, 1, 1)),
                 "warmup_seconds = 100.0: must be < sim_seconds = 100.0", id="warmup >= sim"),
    pytest.param(lambda: SimConfig("hybrid", 100.0, 10.0, 1, _workload(),
                                   MonolithicCluster(1, 1, 1), DisaggregatedCluster(1, 1, 1, 1)),
                 "mode = 'hybrid': must be one of mono, disagg, both", id="unknown mode"),
    pytest.param(lambda: SimConfig("mono", 100.0, 10.0, -1, _workload(),
                                   MonolithicCluster(1, 1, 1), DisaggregatedCluster(1, 1, 1, 1)),
                 "random_seed = -1: must be a whole number >= 0", id="negative seed"),
    pytest.param(lambda: SimConfig("mono", 100.0, 10.0, 1, _workload(),
                                   MonolithicCluster(1, 1, 1), DisaggregatedCluster(1, 1, 1, 1),
                                   replications=0),
                 "replications = 0: must be a whole number in [1, 10000]", id="no replications"),
    pytest.param(lambda: spec.config_from_mapping({"arival": {"rate_per_s": 3}}),
                 "config: unknown key(s) arival", id="unknown top-level key"),
    pytest.param(lambda: spec.config_from_mapping({"cluster_mono": {"gpus": 3}}),
                 "cluster_mono: unknown key(s) gpus", id="unknown cluster key"),
    pytest.param(lambda: spec.config_from_mapping({"prompt_tokens": {"mode": "p50_p90",
                                                                     "p50": 10, "p90": 20,
                                                                     "p95": 30}}),
                 "prompt_tokens: unknown key(s) p95", id="unknown token key"),
    pytest.param(lambda: spec.config_from_mapping({"quantiles": [0.5, 1.0]}),
                 "quantiles[] = 1.0: must be in (0, 1)", id="quantile of 1"),
]


@pytest.mark.parametrize(("make", "message"), BAD)
def test_bad_input_names_field_and_range(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert message in str(err.value), f"message was: {err.value}"


def test_mode_change_in_mapping_drops_old_fields():
    cfg = spec.config_from_mapping({"prompt_tokens": {"mode": "real_mean_std", "mean": 900,
                                                      "std": 300}})
    assert cfg.workload.prompt_tokens.mode == "real_mean_std"
    assert cfg.workload.prompt_tokens.min_value == 8  # kept from the default


# --------------------------------------------------------------------- loading
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_loads(path):
    cfg = spec.load_config(path)
    assert cfg.mode in ("mono", "disagg", "both")
    assert spec.config_from_mapping(spec.config_to_mapping(cfg)) == cfg


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_runs(path):
    """Each seed-guide example runs as written, only shortened (200 s of arrivals)."""
    from simulation import Comparison, simulate_mapping

    data = spec.loader.read_yaml_mapping(path)
    data.update({"sim_seconds": 200.0, "warmup_seconds": 20.0})
    res = simulate_mapping(data)
    results = [res.mono, res.disagg] if isinstance(res, Comparison) else [res]
    for r in results:
        assert r.summary["n_measured"] > 0
        assert 0 < r.summary["p50_ttft_s"] <= r.summary["p99_ttft_s"]


def test_default_matches_seed_default():
    cfg = spec.default_config()
    assert cfg.workload.arrival_rate_per_s == 2.0
    assert (cfg.workload.prompt_tokens.mu, cfg.workload.prompt_tokens.sigma_log) == (6.0, 0.9)
    assert cfg.cluster_mono.num_gpus == 4 and cfg.cluster_disagg.total_gpus == 4


def test_load_config_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        spec.load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="must hold a YAML mapping"):
        spec.load_config(bad)
    neg = tmp_path / "neg.yaml"
    neg.write_text("arrival:\n  rate_per_s: -2\n")
    with pytest.raises(ValueError, match=r"arrival.rate_per_s = -2: must be > 0"):
        spec.load_config(neg)


# --------------------------------------------------------------------- max_value
def test_a_maximum_cuts_the_law_and_its_moments_exactly():
    """``N = min(max_value, ...)``: below the maximum the uncapped law's probabilities,
    at it the whole upper tail ``P(X >= max - 1/2)``; moments summed from those (against
    the uncapped law's pmf cut by hand)."""
    free = TokenDist.lognormal(6.0, 1.2, 1)
    cut = TokenDist("log", mean=6.0, sigma=1.2, min_value=1, max_value=2048)
    values, probs = cut.pmf()
    v_free, p_free = free.pmf()
    below = v_free < 2048
    np.testing.assert_array_equal(values[:-1], v_free[below])
    # (the two pmfs take their normal CDFs by two paths: erfc and scipy's ndtr)
    np.testing.assert_allclose(probs[:-1], p_free[below], rtol=1e-11)
    assert values[-1] == 2048
    assert probs[-1] == pytest.approx(1.0 - free.cdf(2047), rel=1e-12)
    assert probs.sum() == pytest.approx(1.0, abs=1e-14)
    for k in (1, 2, 3, 4):
        want = float(np.sum(v_free[below].astype(float) ** k * p_free[below])) \
            + 2048.0**k * (1.0 - free.cdf(2047))
        assert cut.raw_moment(k) == pytest.approx(want, rel=1e-11), k
    assert cut.cdf(2047) == pytest.approx(free.cdf(2047), rel=1e-14)
    assert cut.cdf(2048) == cut.cdf(10**6) == 1.0
    assert TokenDist("log", mean=math.log(5000), sigma=0.0, max_value=2048).mean_tokens() \
        == 2048.0


def test_a_maximum_cuts_the_draws_and_leaves_the_others_as_they_were():
    """Same seed, same draws: those below the maximum unchanged, the rest cut to it, in
    the proportion the law gives (99.9 % binomial interval)."""
    free = TokenDist.lognormal(6.0, 1.2, 1)
    cut = TokenDist("log", mean=6.0, sigma=1.2, min_value=1, max_value=2048)
    a = free.sample(np.random.default_rng(3), 200_000)
    b = cut.sample(np.random.default_rng(3), 200_000)
    np.testing.assert_array_equal(b, np.minimum(a, 2048))
    p = cut.pmf()[1][-1]
    half = 3.29 * math.sqrt(p * (1 - p) / b.size)
    assert abs(np.mean(b == 2048) - p) < half


@pytest.mark.parametrize(("value", "allowed"), [(4, "[8, 4000008]"), (10**8, "[8, 4000008]"),
                                                (100.5, "[8, 4000008]")])
def test_a_bad_maximum_is_refused_by_name(value, allowed):
    with pytest.raises(ValueError, match=rf"^prompt_tokens.max_value = {value!r}: must be a "
                                         rf"whole number in \[8, 4000008\]$"):
        spec.config_from_mapping({"prompt_tokens": {"max_value": value}})
    del allowed


def test_a_maximum_survives_a_change_of_mode():
    cfg = spec.config_from_mapping({"prompt_tokens": {"mode": "p50_p90", "p50": 400,
                                                      "p90": 1200, "max_value": 2048}})
    assert cfg.workload.prompt_tokens.max_value == 2048
    assert cfg.workload.prompt_tokens.as_dict()["max_value"] == 2048
