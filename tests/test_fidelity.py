"""The fidelity grid of issue 14: its points, its simulated reference, and the targets
the default closed form must meet on it (``validate.fidelity``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import analytic
import spec
from tests import reference as ref
from validate import fidelity as fid

ROOT = Path(__file__).parent.parent
REFERENCE = ROOT / "tests" / "data" / "fidelity_reference.json"
BASE = spec.default_config()


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def test_grid_spans_the_region_of_the_issue():
    points = fid.grid_points()
    mono = [p for p in points if p.architecture == "mono"]
    dis = [p for p in points if p.architecture == "disagg"]
    assert sorted({p.total_gpus for p in mono}) == [1, 2, 4, 8, 16, 32, 64]
    assert sorted({(p.prefill_gpus, p.decode_gpus) for p in dis if p.total_gpus == 8}) == [
        (1, 7), (2, 6), (4, 4), (6, 2), (7, 1)]
    assert {(p.prefill_gpus, p.decode_gpus) for p in dis if p.total_gpus == 64} == {
        (8, 56), (16, 48), (32, 32), (48, 16), (56, 8)}
    assert {p.load for p in points} == {0.3, 0.5, 0.7, 0.8, 0.9, 0.95}
    assert {p.token_sigma for p in points} == {0.3, 0.9, 1.5}
    # 7 mono sizes, 1 + 3 + 5 * 4 = 24 splits; 6 loads x 3 spreads each
    assert len(points) == (7 + 24) * 18 == 558
    assert len(set(points)) == len(points)


@pytest.mark.parametrize(("total", "share", "prefill"), [
    (2, 0.125, 1), (2, 0.875, 1), (4, 0.125, 1), (4, 0.875, 3), (8, 0.125, 1),
    (8, 0.75, 6), (16, 0.875, 14), (5, 0.5, 3)])
def test_split_rounds_to_the_nearest_and_keeps_a_gpu_in_each_pool(total, share, prefill):
    assert fid.split(total, share) == prefill


@pytest.mark.parametrize("index", [0, 40, 130, 300, 557])
def test_point_config_puts_the_busiest_pool_at_the_load(index):
    point = fid.grid_points()[index]
    config, cluster = fid.point_config(BASE, point)
    est = analytic.estimate(config.workload, cluster)
    busiest = max(float(u) for u in est.utilisation.values())
    assert busiest == pytest.approx(point.load, rel=1e-12)
    # the same rate by hand: E[P]/r_p + E[O]/r_d per GPU (mono), the larger pool (disagg)
    ep = ref.pmf_moments(config.workload.prompt_tokens)[0] / cluster.prefill_tokens_per_s
    eo = ref.pmf_moments(config.workload.output_tokens)[0] / cluster.decode_tokens_per_s
    work = ((ep + eo) / point.prefill_gpus if point.architecture == "mono"
            else max(ep / point.prefill_gpus, eo / point.decode_gpus))
    # (the pmf sum stops 7.5 sigma above the median: 2e-6 of the mean at sigma 1.5)
    assert config.workload.arrival_rate_per_s == pytest.approx(point.load / work, rel=1e-5)
    for law in (config.workload.prompt_tokens, config.workload.output_tokens):
        assert law.sigma_log == point.token_sigma
    assert config.workload.prompt_tokens.mu == BASE.workload.prompt_tokens.mu


def test_bad_axes_are_refused_by_name():
    with pytest.raises(ValueError, match=r"validation.grid.load = 1.2: must be a number"):
        fid.GridAxes(load=(0.5, 1.2))
    with pytest.raises(ValueError, match=r"validation.grid.total_gpus = 2.5: must be a whole"):
        fid.GridAxes(total_gpus=(2.5,))
    with pytest.raises(ValueError, match="at least one"):
        fid.GridAxes(token_sigma=())


def test_requests_per_replication_grows_with_variability_and_load():
    n = fid.requests_per_replication
    assert n(0.3, 0.1) == 50_000  # floor
    assert n(0.9, 1.0) == round(4000 * 2 / 0.01)
    assert n(0.95, 8.0) == 4_000_000  # cap


def test_reference_covers_the_grid_and_reproduces_from_its_seed(reference):
    """The committed simulation is of the current grid, and three of its points (one per
    kind) come out the same when simulated again from their stored seeds."""
    points = fid.grid_points(fid.GridAxes.from_mapping(reference["axes"]))
    assert [fid.GridPoint(**r["point"]) for r in reference["points"]] == points
    assert fid.GridAxes() == fid.GridAxes.from_mapping(reference["axes"])
    for i in (0, 126, 200):  # mono 1 GPU, disagg 1:1, disagg 1:7, all at light load
        rec = reference["points"][i]
        again = fid._simulate_one((BASE, points[i], rec["seed"], reference["replications"]))
        for stat in fid.TOLERANCES:
            np.testing.assert_allclose(again[stat], rec[stat], rtol=1e-12)


FORMS = {"default": {}, "before issue 14": {"wait_law": "exponential", "linking": "qna"}}
HOLDOUT = ROOT / "tests" / "data" / "fidelity_holdout.json"


@pytest.fixture(scope="module")
def priced(reference) -> xr.Dataset:
    return fid.price_grid(reference["points"], BASE, FORMS)


@pytest.fixture(scope="module")
def holdout() -> xr.Dataset:
    doc = fid.read_reference(HOLDOUT)
    return fid.price_grid(doc["points"], spec.config_from_mapping(doc["base_config"]), FORMS)


def _assert_targets(ds: xr.Dataset, stats=tuple(fid.TARGETS)) -> None:
    """Issue 14: mean TTFT within 5 % at >= 98 % of the judged points with load <= 0.9,
    P90 within 10 % at >= 95 %, P99 within 15 % at >= 90 %. A point is judged when the
    simulation's 95 % CI half-width is at most half the tolerance; at least 95 % of the
    points must be judged for every statistic, so the check cannot pass by judging few."""
    f = fid.fidelity(ds).sel(source="default")
    for stat in stats:
        assert float(f.within.sel(statistic=stat)) >= fid.TARGETS[stat], stat
        assert int(f.judged.sel(statistic=stat)) >= 0.95 * int(f.n_points), stat


def test_default_closed_form_meets_the_percentile_targets_on_the_whole_grid(priced):
    """P90 and P99 on all 465 points with load <= 0.9, token sigma up to 1.5."""
    _assert_targets(priced, ("p90_ttft_s", "p99_ttft_s"))


def test_default_closed_form_meets_the_mean_target_up_to_sigma_09(priced):
    """The mean on the 310 points of token sigma 0.3 and 0.9. At sigma 1.5 the mean is
    within 5 % at only 87 % of the points (docs/theory.md): the part of issue 14 still
    open."""
    _assert_targets(priced.where(priced.token_sigma <= 0.9, drop=True), ("mean_ttft_s",))


def test_default_closed_form_meets_the_issue_targets_out_of_sample(holdout):
    """The targets on the holdout grid (other token medians, GPU speeds, KV transfer,
    cluster sizes, splits, loads and sigmas 0.6 and 1.2: 120 points), simulated
    separately, which none of the closed forms' empirical constants was chosen on."""
    _assert_targets(holdout)


def test_holdout_is_the_scripted_grid_and_reproduces_from_its_seed():
    """The committed holdout is the script's grid and model, and its first point (one
    GPU) and a disaggregated one come out the same when simulated again."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_fidelity_reference as script

    doc = fid.read_reference(HOLDOUT)
    base = spec.config_from_mapping(doc["base_config"])
    assert fid.GridAxes.from_mapping(doc["axes"]) == script.HOLDOUT_AXES
    assert fid.grid_model(base) == fid.grid_model(spec.config_from_mapping(script.HOLDOUT_MODEL))
    points = fid.grid_points(script.HOLDOUT_AXES)
    assert [fid.GridPoint(**r["point"]) for r in doc["points"]] == points
    for i in (0, 40):
        rec = doc["points"][i]
        assert points[i].architecture == ("mono" if i == 0 else "disagg")
        again = fid._simulate_one((base, points[i], rec["seed"], doc["replications"]))
        for stat in fid.TOLERANCES:
            np.testing.assert_allclose(again[stat], rec[stat], rtol=1e-12)


def test_the_check_catches_the_formulas_before_issue_14(priced):
    """The exponential wait law with QNA linking misses a target on the whole grid."""
    f = fid.fidelity(priced).sel(source="before issue 14")
    assert any(float(f.within.sel(statistic=s)) < t for s, t in fid.TARGETS.items())


def test_fidelity_counts_only_judged_points_at_or_below_the_load_bound():
    """Synthetic: three points; one above the load bound, one with a wide CI."""
    stats = list(fid.TOLERANCES)
    value = np.ones((3, 2, len(stats)))
    value[:, 1, :] = [[1.07] * 4, [1.2] * 4, [1.2] * 4]
    half = np.full((3, len(stats)), 0.001)
    half[1] = 0.5  # point 1: the simulation cannot tell
    ds = xr.Dataset({
        "value": (("point", "source", "statistic"), value),
        "ci_low": (("point", "statistic"), 1 - half),
        "ci_high": (("point", "statistic"), 1 + half),
        "rel_error": (("point", "source", "statistic"), value / value[:, :1] - 1)},
        coords={"point": [0, 1, 2], "source": ["simulation", "m"], "statistic": stats,
                "offered_load": ("point", [0.5, 0.5, 0.95])})
    f = fid.fidelity(ds).sel(source="m")
    assert int(f.n_points) == 2
    assert f.judged.values.tolist() == [1, 1, 1, 1]
    # point 0 alone is judged: 7 % is outside the mean's 5 %, inside 10 % and 15 %
    assert f.within.values.tolist() == [0.0, 1.0, 1.0, 1.0]


SMALL = ["validation.grid.total_gpus=[1,2]", "validation.grid.prefill_share=[0.5]",
         "validation.grid.load=[0.5]", "validation.grid.token_sigma=[0.3]",
         "validation.grid.replications=5"]


def _validate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "validate", "+sweep=grid", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_grid_app_writes_its_outputs_and_reuses_its_simulation(tmp_path):
    """A three-point grid end to end: the report opens with its conclusion; pricing the
    stored simulation again gives the same dataset."""
    first = _validate(*SMALL, f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    report = (tmp_path / "a" / "fidelity.md").read_text()
    assert report.splitlines()[2].startswith("**kimura ")
    assert "| kimura |" in report and "| mmc |" in report
    again = _validate(*SMALL, f"validation.grid.reference={tmp_path / 'a' / 'simulation.json'}",
                      f"hydra.run.dir={tmp_path / 'b'}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    a = xr.load_dataset(tmp_path / "a" / "dataset.nc")
    b = xr.load_dataset(tmp_path / "b" / "dataset.nc")
    assert a.sizes["point"] == 3  # mono 1 and 2 GPUs, disagg 1:1
    xr.testing.assert_identical(a, b)


@pytest.mark.parametrize(("args", "message"), [
    (["validation.grid.load=[0.5,1.5]"], "validation.grid.load = 1.5: must be a number in"),
    (["validation.grid.workers=0"], "validation.grid.workers = 0: must be a whole number"),
    (["validation.grid.replications=4"],
     "validation.grid.replications = 4: must be a whole number >= 5"),
    (["validation.grid.reference=nowhere.json"],
     "validation.grid.reference = 'nowhere.json': not a stored grid simulation"),
    ([f"validation.grid.reference={REFERENCE}", "validation.grid.total_gpus=[1,2]"],
     "simulated on other axes ({'total_gpus': [1, 2, 4, 8, 16, 32, 64]"),
    ([f"validation.grid.reference={REFERENCE}", "cluster_mono.prefill_tokens_per_s=9000"],
     "simulated with another workload or cluster than this config's"),
])
def test_grid_app_refuses_bad_input_by_name_before_any_work(tmp_path, args, message):
    proc = _validate(*args, f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert not (tmp_path / "dataset.nc").exists()


def test_breakdown_counts_each_group_separately():
    stats = list(fid.TOLERANCES)
    value = np.ones((4, 2, len(stats)))
    value[:, 1, :] = [[1.01] * 4, [1.2] * 4, [1.01] * 4, [1.01] * 4]
    half = np.full((4, len(stats)), 0.001)
    ds = xr.Dataset({
        "value": (("point", "source", "statistic"), value),
        "ci_low": (("point", "statistic"), 1 - half),
        "ci_high": (("point", "statistic"), 1 + half),
        "rel_error": (("point", "source", "statistic"), value / value[:, :1] - 1)},
        coords={"point": [0, 1, 2, 3], "source": ["simulation", "m"], "statistic": stats,
                "offered_load": ("point", [0.5] * 4),
                "token_sigma": ("point", [0.3, 0.3, 1.5, 1.5])})
    table = fid.breakdown_table(ds, "m", "token_sigma").splitlines()
    assert table[2] == "| 0.3 | 50.0% (2) | 50.0% (2) | 50.0% (2) | 50.0% (2) |"
    assert table[3] == "| 1.5 | 100.0% (2) | 100.0% (2) | 100.0% (2) | 100.0% (2) |"
