"""``python -m validate`` on the batched serving model (issue 11, point 3): both batched
architectures simulated on the same requests, the batched closed forms beside them, the
seed point's dataset layout with TTFT, TPOT, E2E and SLO attainment along ``statistic``."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import analytic
from simulation import compare
from spec import SimConfig, TokenDist, config_from_mapping
from validate.batched_point import BATCHED_STATISTICS, CLOSED_FORM, run_batched_point
from validate.point import VERDICTS, Thresholds

ROOT = Path(__file__).parent.parent


def opt13b(rate: float, **over) -> SimConfig:
    """DistServe's OPT-13B setting (conf/scenario/distserve_opt13b.yaml) at ``rate``."""
    from spec.loader import read_yaml_mapping

    data = read_yaml_mapping(ROOT / "conf" / "scenario" / "distserve_opt13b.yaml")
    data.update(arrival={"rate_per_s": rate}, sim_seconds=over.pop("sim_seconds", 1200.0),
                warmup_seconds=120.0, replications=over.pop("replications", 3), **over)
    return config_from_mapping(data)


@pytest.fixture(scope="module")
def point() -> tuple[SimConfig, xr.Dataset]:
    config = opt13b(3.0)
    return config, run_batched_point(config, thresholds=Thresholds())


def test_each_architecture_is_simulated_and_priced_as_itself(point):
    config, ds = point
    assert ds.statistic.values.tolist() == list(BATCHED_STATISTICS)
    assert ds.source.values.tolist() == ["simulation", CLOSED_FORM]
    cmp = compare(replace(config, quantiles=(0.5, 0.9, 0.99)), keep_requests=False)
    mono, disagg = config.clusters()
    for arch, sim, cluster in (("mono", cmp.mono, mono), ("disagg", cmp.disagg, disagg)):
        d = ds.sel(architecture=arch)
        for stat in BATCHED_STATISTICS:  # the same requests: the same simulated numbers
            assert float(d.value.sel(source="simulation", statistic=stat)) == \
                pytest.approx(sim.summary[stat], rel=1e-12)
        est = analytic.batched_estimate(config.workload, cluster)
        for stat in ("mean_ttft_s", "mean_tpot_s", "mean_e2e_s"):
            assert float(d.value.sel(source=CLOSED_FORM, statistic=stat)) == est[stat]
        assert float(d.offered_load) == pytest.approx(3.0 / est["stability_limit_rps"])
        assert int(d.stable) == 1
    assert str(ds.binding.sel(architecture="disagg").values) == "decode KV memory"


def test_statistics_carry_metric_and_unit_and_missing_forms_say_so(point):
    _, ds = point
    tpot = ds.set_xindex("metric").sel(metric="tpot")
    assert tpot.statistic.values.tolist() == ["mean_tpot_s", "p90_tpot_s"]
    assert ds.unit.sel(statistic="slo_attainment") == "1"
    assert ds.unit.sel(statistic="mean_e2e_s") == "s"
    # no closed form yet for P90 TPOT: NaN, verdict n/a (-1), never agree; both forms give
    # the TTFT percentiles and the SLO attainment (priced with the config's SLO), and at
    # this light load they agree with the simulation
    v = ds.sel(source=CLOSED_FORM, statistic="p90_tpot_s")
    assert np.isnan(v.value).all() and (v.verdict == -1).all()
    for stat in ("p90_ttft_s", "slo_attainment"):
        for arch in ("mono", "disagg"):
            one = ds.sel(source=CLOSED_FORM, statistic=stat, architecture=arch)
            assert np.isfinite(one.value) and one.verdict == VERDICTS["agree"], (stat, arch)


def test_the_closed_forms_agree_with_the_simulation_at_light_load(point):
    """Rate 3 (offered load 0.32 colocated, 0.42 disaggregated): each mean the forms give
    lies inside the simulation's 95 % CI widened by 5 % (issue 11's agreement rule)."""
    _, ds = point
    means = ["mean_ttft_s", "mean_tpot_s", "mean_e2e_s"]
    v = ds.verdict.sel(source=CLOSED_FORM, statistic=means)
    assert (v == VERDICTS["agree"]).all(), ds.rel_error.sel(source=CLOSED_FORM,
                                                            statistic=means).values


def test_colocated_e2e_counts_the_tokens_after_the_first():
    """Three output tokens each: E2E = TTFT + 2 decode steps, so a form counting three
    steps (E[o] for E[o] - 1) errs by +20 %; checked against the simulation's CI."""
    config = opt13b(1.0, sim_seconds=2400.0, replications=4)
    config = replace(config, workload=replace(
        config.workload, output_tokens=TokenDist(name="output_tokens", mode="log",
                                                 mean=float(np.log(3.0)), sigma=0.0)))
    res = compare(config, keep_requests=False).mono
    est = analytic.batched_estimate(config.workload, config.clusters()[0])
    lo, hi = res.ci["mean_e2e_s"]
    assert lo * 0.95 <= est["mean_e2e_s"] <= hi * 1.05, (lo, est["mean_e2e_s"], hi)


def test_batched_rates_sweep_end_to_end(tmp_path):
    """The shipped sweep, cut to two rates and short runs: one light, one past the
    disaggregated pair's limit (7.2 req/s by the closed form, decode KV memory)."""
    folder = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "validate", "+sweep=batched_rates",
                           "arrival.rate_per_s=2,8", "sim_seconds=900",
                           "warmup_seconds=90", "replications=2",
                           f"hydra.sweep.dir={folder}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ds = xr.load_dataset(folder / "dataset.nc")
    assert ds.arrival_rate_per_s.values.tolist() == [2.0, 8.0]
    assert ds.attrs["serving"] == "batched"
    assert ds.metric.values.tolist() == ["ttft"] * 4 + ["tpot"] * 2 + ["e2e", "attainment"]
    over = ds.sel(arrival_rate_per_s=8.0, architecture="disagg")
    assert int(over.stable) == 0 and float(over.offered_load) > 1.0
    assert (over.verdict.sel(source=CLOSED_FORM) == VERDICTS["unstable"]).all()
    report = (folder / "report.md").read_text()
    assert report.startswith("# Batched serving validation")
    assert ("Where to trust closed_form: mono (closed-form limit 9.39 requests/s, bound by "
            "KV memory)") in report
    assert "Unstable (simulated backlog grows): disagg at 8." in report
    # its formulas are the batched model's (analytic.symbolic.BATCHED_FORMULAS)
    assert "**Batch-everything prefill instance, heavy-traffic closed form**" in report
    assert "Pollaczek" not in report


def _point(*overrides: str):
    from hydra import compose, initialize_config_module

    from conf.schema import register
    from validate.app import build_point

    register()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="validate",
                      overrides=["scenario=distserve_opt13b", *overrides])
        return build_point(cfg)[0]


def test_a_gpu_budget_sizes_both_batched_clusters():
    """The fifo model's budget knobs, one way to say it: colocated gets every GPU as
    instances of its tp; the split gets prefill_gpus / tp prefill instances and the rest
    as decode instances; rate_per_gpu scales the rate."""
    c = _point("validation.total_gpus=4", "validation.prefill_gpus=3",
               "validation.rate_per_gpu=2.5")
    assert c.batched_mono.instances == 4 and c.batched_mono.total_gpus == 4
    assert (c.batched_disagg.prefill_instances, c.batched_disagg.decode_instances) == (3, 1)
    assert c.workload.arrival_rate_per_s == 10.0
    # tp 2 everywhere: 8 GPUs are 4 colocated instances, prefill_share 0.25 -> 1 + 3
    c = _point("profile=distserve/opt-13b_tp2", "validation.total_gpus=8",
               "validation.prefill_share=0.25")
    assert c.batched_mono.instances == 4 and c.batched_mono.total_gpus == 8
    assert (c.batched_disagg.prefill_instances, c.batched_disagg.decode_instances) == (1, 3)


@pytest.mark.parametrize(("overrides", "message"), [
    (["validation.total_gpus=4", "validation.prefill_gpus=4"],
     "validation.prefill_gpus = 4: must be a multiple of the prefill instance's tp = 1 "
     "leaving validation.total_gpus - prefill_gpus = 0 GPUs, a positive multiple of the "
     "decode instance's tp = 1"),
    (["profile=distserve/opt-13b_tp2", "validation.total_gpus=6",
      "validation.prefill_gpus=3"],
     "validation.prefill_gpus = 3: must be a multiple of the prefill instance's tp = 2 "
     "leaving validation.total_gpus - prefill_gpus = 3 GPUs, a positive multiple of the "
     "decode instance's tp = 2"),
    (["profile=distserve/opt-13b_tp2", "validation.total_gpus=5"],
     "validation.total_gpus = 5: must be a multiple of the colocated instance's tp = 2"),
    (["validation.prefill_gpus=1"], "validation.prefill_gpus = 1: needs validation.total_gpus"),
])
def test_a_budget_the_instances_do_not_divide_is_refused(overrides, message):
    with pytest.raises(ValueError) as err:
        _point(*overrides)
    assert str(err.value) == message
