"""The validation harness end to end: sweeps, the combined dataset, verdicts, reports,
failures that lose nothing, launchers that agree."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from validate.combine import combine_sweep
from validate.point import VERDICTS, Thresholds, verdict

ROOT = Path(__file__).parent.parent
TINY = ["sim_seconds=400", "warmup_seconds=40", "replications=3",
        "validation.methods=[kimura,mmc]"]


def _at_rate_2(tmp_path, action: str) -> dict:
    """An environment whose sitecustomize runs ``action`` (one line of Python) in place
    of the sweep point at arrival rate 2.0; other points run as usual."""
    import os

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import validate.point as p
        _orig = p.run_point
        def run_point(config, **kw):
            if config.workload.arrival_rate_per_s == 2.0:
                {action}
            return _orig(config, **kw)
        p.run_point = run_point
    """))
    return {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{ROOT}"}


def run_validate(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "validate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


# ------------------------------------------------------------------ verdict logic
def test_verdict_on_constructed_data():
    th = Thresholds(tolerance=0.05, band=0.15)
    lo, hi = 1.0, 1.2
    cases = {1.1: "agree", 0.96: "agree", 1.25: "agree", 0.9: "close", 1.37: "close",
             0.84: "diverge", 1.4: "diverge"}
    for value, expected in cases.items():
        got = int(verdict(np.array(value), lo, hi, True, th))
        assert got == VERDICTS[expected], f"{value}: {got}"
    assert int(verdict(np.array(1.1), lo, hi, False, th)) == VERDICTS["unstable"]
    assert int(verdict(np.array(np.inf), lo, hi, False, th)) == VERDICTS["unstable"]
    assert int(verdict(np.array(1.1), np.nan, np.nan, True, th)) == -1


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="validation.band = 0.01: must be >= "):
        Thresholds(tolerance=0.05, band=0.01)
    with pytest.raises(ValueError, match=r"validation.tolerance = -0.1: must be a number"):
        Thresholds(tolerance=-0.1)


# ------------------------------------------------------------------ a tiny sweep
@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep") / "basic"
    proc = run_validate("+sweep=rates", "arrival.rate_per_s=1,5.7,4", *TINY,
                        f"hydra.sweep.dir={folder}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def test_tiny_multirun_dataset(tiny_sweep):
    ds = xr.load_dataset(tiny_sweep / "dataset.nc")
    assert ds.arrival_rate_per_s.values.tolist() == [1.0, 4.0, 5.7]
    assert ds.source.values.tolist() == ["simulation", "kimura", "mmc"]
    assert ds.statistic.values.tolist() == ["mean_ttft_s", "p50_ttft_s", "p90_ttft_s",
                                            "p99_ttft_s"]
    for var in ("value", "ci_low", "ci_high", "rel_error", "verdict", "offered_load",
                "utilisation", "ttft_quantile"):
        assert var in ds, var
    assert ds.value.attrs["units"] == "s" and ds.value.attrs["long_name"]
    assert ds.attrs["engine"] == "fast" and ds.attrs["replications"] == 3
    assert "arrival" in ds.attrs["config_yaml"] and ds.attrs["n_failed"] == 0
    # 5.7 req/s saturates the 2 + 2 disaggregated decode pool: unstable, analytic inf
    d = ds.sel(arrival_rate_per_s=5.7, architecture="disagg")
    assert int(d.stable) == 0
    assert np.all(d.verdict.sel(source=["kimura", "mmc"]) == VERDICTS["unstable"])
    assert np.isinf(d.value.sel(source="kimura")).all()
    assert np.isfinite(d.value.sel(source="simulation")).all()
    # stable points carry a CI around the simulated mean
    m = ds.sel(arrival_rate_per_s=1.0, architecture="mono", statistic="mean_ttft_s")
    assert float(m.ci_low) < float(m.value.sel(source="simulation")) < float(m.ci_high)


def test_tiny_multirun_report(tiny_sweep):
    html = (tiny_sweep / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5  # figures and formulas embedded
    md = (tiny_sweep / "report.md").read_text()
    assert "| method | architecture | region |" in md
    assert "$$" in md
    for name in ("statistics_0.png", "architectures_0.png", "errors.png",
                 "distributions.png"):
        assert (tiny_sweep / "figures" / name).stat().st_size > 10_000


def test_report_rebuilds_from_the_dataset_alone(tiny_sweep, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "reports", str(tiny_sweep / "dataset.nc"),
                           "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.html").is_file() and (tmp_path / "figures").is_dir()


def test_combine_reruns_on_a_partial_folder(tiny_sweep, tmp_path):
    """A job that left nothing (killed, or never run) is not passed over: combine knows
    the grid from multirun.yaml, writes the job an error.json, keeps its point on the
    grid with the verdict 'missing', opens the report with a banner, and exits 1."""
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(tiny_sweep, partial)
    shutil.rmtree(partial / "1")  # as if job 1 had been killed before writing anything
    ds = combine_sweep(partial)
    assert ds.attrs["n_points"] == 2 and ds.attrs["n_expected"] == 3
    assert sorted(ds.arrival_rate_per_s.values.tolist()) == [1.0, 4.0, 5.7]
    lost = ds.sel(arrival_rate_per_s=5.7)
    assert bool(lost.value.isnull().all()) and set(lost.verdict.values.ravel()) == \
        {VERDICTS["missing"]}
    err = json.loads((partial / "1" / "error.json").read_text())
    assert "the job was killed or never ran" in err["error"]
    assert "arrival.rate_per_s=5.7" in err["overrides"]
    proc = subprocess.run([sys.executable, "-m", "validate.combine", str(partial)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "1 of 3 sweep points have no result" in proc.stderr
    report = (partial / "report.md").read_text().splitlines()
    assert report[2].startswith("> **INCOMPLETE: 1 of 3 sweep points have no result "
                                "(arrival_rate_per_s = 5.7)")


def test_rerunning_into_a_sweep_folder_is_refused(tiny_sweep):
    proc = run_validate("+sweep=rates", "arrival.rate_per_s=1,2", *TINY,
                        f"hydra.sweep.dir={tiny_sweep}")
    assert proc.returncode == 2
    assert "already holds a sweep's results; a second run would be merged" in proc.stderr


def test_a_killed_joblib_worker_loses_no_finished_point(tmp_path):
    """A worker SIGKILLed mid-sweep aborts joblib's batch; the points that finished are
    kept, the others get an error.json and a 'missing' verdict, the report says so, and
    the command exits non-zero."""
    # the job beside it finishes first (its result.nc written: waited for, not timed,
    # so a busy machine cannot kill both), then this one's process dies
    folder = tmp_path / "sweep"
    env = _at_rate_2(tmp_path, "import os, signal, time, pathlib; "
                               f"done = pathlib.Path({str(folder / '0' / 'result.nc')!r}); "
                               "end = time.time() + 600; "
                               "any(done.exists() or time.time() > end or time.sleep(0.1) "
                               "for _ in iter(int, 1)); "
                               "os.kill(os.getpid(), signal.SIGKILL)")
    proc = run_validate("+sweep=rates", "arrival.rate_per_s=1,2", *TINY,
                        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                        f"hydra.sweep.dir={folder}", env=env)
    assert proc.returncode != 0
    assert "finished points kept, 1 missing, each with an error.json" in proc.stderr
    assert (folder / "0" / "result.nc").is_file() and (folder / "1" / "error.json").is_file()
    ds = xr.load_dataset(folder / "dataset.nc")
    assert ds.attrs["n_points"] == 1 and ds.attrs["n_expected"] == 2
    assert (folder / "report.md").read_text().splitlines()[2].startswith("> **INCOMPLETE")


def test_a_truncated_result_is_named_and_the_rest_combined(tiny_sweep, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_sweep, broken)
    nc = broken / "1" / "result.nc"
    nc.write_bytes(nc.read_bytes()[:2000])  # as if the disk filled mid-write elsewhere
    proc = subprocess.run([sys.executable, "-m", "validate.combine", str(broken)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "2 points combined, 1 failed" in proc.stdout
    assert f"job 1: {nc}: unreadable result.nc (truncated or not netCDF" in proc.stderr
    assert xr.load_dataset(broken / "dataset.nc").attrs["n_failed"] == 1


def test_joblib_launcher_gives_the_same_dataset(tiny_sweep, tmp_path):
    folder = tmp_path / "joblib"
    proc = run_validate("+sweep=rates", "arrival.rate_per_s=1,5.7,4", *TINY,
                        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                        f"hydra.sweep.dir={folder}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = xr.load_dataset(tiny_sweep / "dataset.nc")
    b = xr.load_dataset(folder / "dataset.nc")
    xr.testing.assert_equal(a[["value", "ci_low", "ci_high", "verdict"]],
                            b[["value", "ci_low", "ci_high", "verdict"]])


# ------------------------------------------------------------------ nothing lost
def test_a_failing_point_leaves_the_rest(tmp_path):
    """Inject a failure into one point (a sitecustomize that wraps run_point)."""
    env = _at_rate_2(tmp_path, "raise RuntimeError('injected failure')")
    folder = tmp_path / "sweep"
    proc = run_validate("+sweep=rates", "arrival.rate_per_s=1,2,3", *TINY,
                        f"hydra.sweep.dir={folder}", env=env)
    assert proc.returncode == 1, "a sweep with a failed point must not exit 0"
    assert "1 sweep point(s) failed" in proc.stderr
    ds = xr.load_dataset(folder / "dataset.nc")
    assert ds.arrival_rate_per_s.values.tolist() == [1.0, 2.0, 3.0]  # 2.0: 'missing'
    assert bool(ds.value.sel(arrival_rate_per_s=2.0).isnull().all())
    failed = json.loads(ds.attrs["failed_points"])
    assert len(failed) == 1 and "injected failure" in failed[0]["error"]
    assert "injected failure" in (folder / "report.md").read_text()


def test_bad_sweep_point_fails_before_any_job(tmp_path):
    folder = tmp_path / "sweep"
    proc = run_validate("+sweep=rates", "arrival.rate_per_s=1,-2", *TINY,
                        f"hydra.sweep.dir={folder}")
    assert proc.returncode == 2
    assert "error: arrival.rate_per_s = -2.0: must be > 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(p.is_dir() for p in folder.glob("*")), "a job ran before validation"


def test_misspelled_plus_key_stops_the_sweep_before_any_job(tmp_path):
    """``+validaton.tolerance=0.1,0.2`` used to run: the key ignored, and swept, a fake
    axis in the dataset. It stops before any job, naming the key."""
    folder = tmp_path / "sweep"
    proc = run_validate("+sweep=rates", "+validaton.tolerance=0.1,0.2", *TINY,
                        f"hydra.sweep.dir={folder}")
    assert proc.returncode == 2
    assert "error: validaton: no such setting (misspelled?" in proc.stderr
    assert not folder.exists() or not any(p.is_dir() for p in folder.glob("*"))


def test_config_file_sweep_with_validation_overrides(tmp_path):
    """``-m config=FILE`` with a swept rate and ``validation.*`` overrides used to stop at
    the sweep check ("HydraConfig was not set"): it runs, the file's values under the
    command line's."""
    f = tmp_path / "c.yaml"
    f.write_text("arrival:\n  rate_per_s: 9\ncluster_mono:\n  num_gpus: 5\n")
    folder = tmp_path / "sweep"
    proc = run_validate("-m", f"config={f}", "arrival.rate_per_s=1,2", *TINY,
                        "validation.tolerance=0.1", f"hydra.sweep.dir={folder}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ds = xr.load_dataset(folder / "dataset.nc")
    assert ds.arrival_rate_per_s.values.tolist() == [1.0, 2.0]
    assert "num_gpus: 5" in ds.attrs["config_yaml"] and ds.attrs["tolerance"] == 0.1


def test_single_point_prints_table_and_writes_outputs(tmp_path):
    proc = run_validate(*TINY, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mean_ttft_s" in proc.stdout and "simulation (95% CI)" in proc.stdout
    assert (tmp_path / "dataset.nc").is_file() and (tmp_path / "report.html").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["replications=1"], "replications = 1: must be >= 2"),
    (["validation.methods=[kimura,bogus]"], "validation.methods = ['kimura', 'bogus']"),
    (["validation.total_gpus=1"], "validation.total_gpus = 1: must be a whole number >= 2"),
    (["validation.rate_per_gpu=2"], "validation.rate_per_gpu = 2.0: needs validation.total_gpus"),
])
def test_bad_validation_settings(args, message, tmp_path):
    proc = run_validate(*TINY, *args, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert message in proc.stderr
