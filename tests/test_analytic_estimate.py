"""TTFT estimates: numerical accuracy of the percentile method, grids, xarray, capacity,
and the command line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize

import analytic
import spec
from analytic.ttft import _wait_sf

ROOT = Path(__file__).parent.parent
CFG = spec.default_config()


def _brute_quantile(est, q, workload, cluster):
    """``P(X + W <= t) = q`` by root finding over the *full* exact pmf of the prompt length
    (no quantisation): the reference for the quantised nodes the estimate uses."""
    law = est._law
    v, p = workload.prompt_tokens.pmf()
    tail = np.cumsum(p[::-1])[::-1]
    keep = tail > 1e-13  # the rest moves F by less than 1e-13
    v, p = v[keep], p[keep]
    kappa = 0.0 if cluster.mode == "mono" else cluster.kv_transfer_s_per_token
    x = v * (1 / cluster.prefill_tokens_per_s + kappa) + 1 / cluster.decode_tokens_per_s
    a, m1, s1, b, m2, s2 = (float(np.ravel(law[k])[0])
                            for k in ("a", "m1", "s1", "b", "m2", "s2"))

    shapes = law["shapes"]

    def F(t):
        pos = x <= t
        if shapes is None:
            sf = _wait_sf(t - x[pos], a, m1, s1, b, m2, s2, law["exact_sum"])
        else:  # the same wait law as the estimate: what differs is only X's nodes
            y = (t - x[pos])[None, :]
            sf = shapes.wait_sf(y, np.array([0]), *(np.array([[v]]) for v in (a, m1, b, m2)))[0]
        return float(np.sum(p[pos] * (1.0 - sf)))

    # Brent's method on the monotone F (a jump of F is found as the least t past it)
    return optimize.brentq(lambda t: F(t) - q, 0.0, 200.0, xtol=1e-12, rtol=1e-12)


@pytest.mark.parametrize(("cluster", "rate"), [
    pytest.param(CFG.cluster_mono, 2.0, id="mono light"),
    pytest.param(CFG.cluster_mono, 8.0, id="mono heavy"),
    pytest.param(CFG.cluster_disagg, 4.0, id="disagg medium"),
    pytest.param(spec.DisaggregatedCluster(2, 3, 8000.0, 2000.0, 2e-5), 5.0,
                 id="disagg with transfer"),
])
@pytest.mark.parametrize("wait_law", analytic.WAIT_LAWS)
def test_percentiles_match_full_pmf_within_1e_3(cluster, rate, wait_law):
    """The quantised law of X must not move a percentile by more than 0.1 %, whatever
    the wait law."""
    wl = CFG.workload.with_rate(rate)
    est = analytic.estimate(wl, cluster, wait_law=wait_law)
    for q in (0.5, 0.9, 0.99, 0.999):
        ref = _brute_quantile(est, q, wl, cluster)
        assert est.quantile(q) == pytest.approx(ref, rel=1e-3), f"q={q}"


def test_mean_is_sum_of_stage_means():
    est = analytic.estimate(CFG.workload, CFG.cluster_disagg)
    total = est.mean_wait_s["prefill"] + est.mean_prefill_s + est.mean_wait_s["decode"] + \
        est.first_token_s
    assert est.mean_ttft_s == pytest.approx(total, rel=1e-14)
    assert est.p50_ttft_s <= est.p90_ttft_s <= est.p99_ttft_s


def test_unstable_points_are_inf_with_flag():
    est = analytic.estimate(CFG.workload, CFG.cluster_disagg,
                            arrival_rate_per_s=np.array([2.0, 5.0, 6.0, 50.0]))
    assert est.stable.tolist() == [True, True, False, False]
    assert np.isfinite(est.mean_ttft_s).tolist() == [True, True, False, False]
    assert np.isfinite(est.quantile(0.99)).tolist() == [True, True, False, False]


def test_grid_matches_pointwise_and_labels_dims():
    rates, gpus = np.array([1.0, 3.0, 6.0]), np.array([4, 6])
    est = analytic.estimate_grid(CFG.workload, CFG.cluster_mono, arrival_rate_per_s=rates,
                                 num_gpus=gpus)
    ds = est.to_xarray()
    assert ds.mean_ttft_s.dims == ("arrival_rate_per_s", "num_gpus")
    assert ds.p99_ttft_s.attrs["units"] == "s"
    for i, r in enumerate(rates):
        for j, g in enumerate(gpus):
            one = analytic.estimate(CFG.workload.with_rate(r),
                                    spec.MonolithicCluster(int(g), 8000.0, 2000.0))
            assert ds.mean_ttft_s.values[i, j] == pytest.approx(one.mean_ttft_s, rel=1e-12)
            assert ds.p99_ttft_s.values[i, j] == pytest.approx(one.p99_ttft_s, rel=1e-6)


def test_bad_grid_inputs_are_refused():
    with pytest.raises(ValueError, match="num_gpus = 2.5"):
        analytic.estimate(CFG.workload, CFG.cluster_mono, num_gpus=[4, 2.5])
    with pytest.raises(ValueError, match="arrival_rate_per_s = 0.0"):
        analytic.estimate(CFG.workload, CFG.cluster_mono, arrival_rate_per_s=[0.0, 1.0])
    with pytest.raises(ValueError, match="only for a DisaggregatedCluster"):
        analytic.estimate(CFG.workload, CFG.cluster_mono, prefill_gpus=2)
    with pytest.raises(ValueError, match="method = 'x'"):
        analytic.estimate(CFG.workload, CFG.cluster_mono, method="x")


# ------------------------------------------------------------------ capacity
def test_max_rate_is_where_the_slo_binds():
    slo = {"p99_ttft_s": 1.0}
    for cl in (CFG.cluster_mono, CFG.cluster_disagg):
        r = analytic.max_rate(CFG.workload, cl, slo)
        at = analytic.estimate(CFG.workload.with_rate(r), cl).p99_ttft_s
        assert at == pytest.approx(1.0, rel=1e-6), cl.mode
        assert 0 < r < analytic.saturation_rate_per_s(CFG.workload, cl)


def test_max_rate_zero_when_idle_cluster_misses():
    assert analytic.max_rate(CFG.workload, CFG.cluster_mono, {"mean_ttft_s": 0.01}) == 0.0


def test_min_gpus_meets_the_slo_and_one_fewer_does_not():
    wl, slo = CFG.workload.with_rate(20.0), {"p99_ttft_s": 0.5, "mean_ttft_s": 0.2}
    best = analytic.min_gpus(wl, CFG.cluster_mono, slo)
    ok = analytic.estimate(wl, best)
    assert ok.p99_ttft_s <= 0.5 and ok.mean_ttft_s <= 0.2
    fewer = analytic.estimate(wl, spec.MonolithicCluster(best.num_gpus - 1, 8000.0, 2000.0))
    assert fewer.p99_ttft_s > 0.5 or fewer.mean_ttft_s > 0.2
    split = analytic.min_gpus(wl, CFG.cluster_disagg, {"p99_ttft_s": 0.5})
    assert analytic.estimate(wl, split).p99_ttft_s <= 0.5
    total = split.prefill_gpus + split.decode_gpus
    c1 = np.arange(1, total - 1)
    worse = analytic.estimate(wl, CFG.cluster_disagg, prefill_gpus=c1,
                              decode_gpus=total - 1 - c1).p99_ttft_s
    assert np.all(worse > 0.5), "a smaller disaggregated cluster also meets the SLO"


def test_min_gpus_refuses_an_impossible_slo():
    with pytest.raises(ValueError, match="not met even with no queueing"):
        analytic.min_gpus(CFG.workload, CFG.cluster_mono, {"p50_ttft_s": 0.001})


def test_best_split_is_the_best_of_its_table():
    choice = analytic.best_split(CFG.workload, CFG.cluster_disagg, 8, {"p99_ttft_s": 1.0})
    assert choice.prefill_gpus + choice.decode_gpus == 8
    assert choice.max_rate_per_s == max(choice.max_rate_by_prefill_gpus.values())
    assert len(choice.max_rate_by_prefill_gpus) == 7


@pytest.mark.parametrize(("slo", "message"), [
    ({}, "must name at least one statistic"),
    ({"p99_latency_s": 1.0}, "must be mean_ttft_s or pNN_ttft_s"),
    ({"p99_ttft_s": -1.0}, "must be a finite number > 0"),
])
def test_bad_slo(slo, message):
    with pytest.raises(ValueError, match=message):
        analytic.max_rate(CFG.workload, CFG.cluster_mono, slo)


# ------------------------------------------------------------------ command line
def test_cli_prints_both_estimates():
    proc = subprocess.run([sys.executable, "-m", "analytic", "mode=both", "method=whitt93"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["method"] == "whitt93"
    assert out["mono"]["mean_ttft_s"] < out["disagg"]["mean_ttft_s"]
    assert "p99_ttft_s" in out["relative_difference"]


def test_cli_bad_method_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "analytic", "method=nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: method = 'nope': must be one of")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("cluster", "axes", "message"), [
    ("mono", {"num_gpus": 0}, "num_gpus = 0.0: must be a whole number >= 1"),
    ("mono", {"num_gpus": [4, 2.5]}, "num_gpus = 2.5: must be a whole number >= 1"),
    ("disagg", {"prefill_gpus": 0}, "prefill_gpus = 0.0: must be a whole number >= 1"),
    ("disagg", {"prefill_gpus": 1.5}, "prefill_gpus = 1.5: must be a whole number >= 1"),
    ("disagg", {"decode_gpus": 0}, "decode_gpus = 0.0: must be a whole number >= 1"),
    ("disagg", {"decode_gpus": 1.5}, "decode_gpus = 1.5: must be a whole number >= 1"),
    ("mono", {"arrival_rate_per_s": 0.0},
     "arrival_rate_per_s = 0.0: must be a finite number > 0"),
    ("mono", {"arrival_rate_per_s": [1.0, -1.0]},
     "arrival_rate_per_s = -1.0: must be a finite number > 0"),
    ("disagg", {"num_gpus": 4},
     "num_gpus: only for a MonolithicCluster (use prefill_gpus, decode_gpus)"),
    ("mono", {"prefill_gpus": 2}, "prefill_gpus / decode_gpus: only for a DisaggregatedCluster"),
    ("neither", {}, "cluster = 'x': must be a MonolithicCluster or DisaggregatedCluster"),
])
def test_estimate_refuses_each_bad_axis_by_name_and_range(cluster, axes, message):
    """Every grid axis of ``estimate`` checked before any work, one message naming the
    field and its allowed range (issue 13: the mutation run found none of these read)."""
    cfg = spec.default_config()
    target = {"mono": cfg.cluster_mono, "disagg": cfg.cluster_disagg, "neither": "x"}[cluster]
    with pytest.raises(ValueError) as err:
        analytic.estimate(cfg.workload, target, **axes)
    assert str(err.value) == message
