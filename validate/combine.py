"""Gather a sweep's per-job results into one Dataset, atomically; rerunnable on a partial
or interrupted sweep folder (``python -m validate.combine FOLDER``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import xarray as xr

from fileio import atomic_write, atomic_write_text, json_safe

from .point import MISSING_VERDICT, VERDICTS

RESULT = "result.nc"
ERROR = "error.json"
DATASET = "dataset.nc"
#: Dimensions every point has; any other dimension is a swept parameter.
POINT_DIMS = ("architecture", "source", "statistic", "kind", "prob")


#: Friendly dimension names for swept keys (others: dots become underscores).
DIM_NAMES = {
    "arrival.rate_per_s": "arrival_rate_per_s",
    "validation.total_gpus": "total_gpus",
    "validation.prefill_gpus": "prefill_gpus",
    "validation.rate_per_gpu": "rate_per_gpu",
    "validation.prefill_share": "prefill_share",
    "batched_mono.instance.kv_capacity_tokens": "kv_capacity_tokens",
    "arrival.cv": "arrival_cv",
    "batched_mono.instance.max_num_batched_tokens": "token_budget",
}


def dim_name(key: str) -> str:
    return DIM_NAMES.get(key, key.replace(".", "_"))


def coords_of(overrides) -> dict[str, Any]:
    """``{dim: value}`` for every scalar ``key=value`` of a job's overrides (its point)."""
    import yaml

    coords: dict[str, Any] = {}
    for item in overrides:
        key, _, raw = str(item).lstrip("+~").partition("=")
        if key.startswith("hydra") or key in ("sweep", "scenario", "config", "workload",
                                              "validation") or not raw:
            continue
        value = yaml.safe_load(raw)
        if isinstance(value, bool | int | float | str):
            coords[dim_name(key)] = float(value) if isinstance(value, int | float) and \
                not isinstance(value, bool) else str(value)
    return coords


def sweep_jobs(config) -> list[list[str]]:
    """Every job's overrides, in job-number order, as Hydra's basic sweeper expands them
    (the sweep's ``hydra.sweeper.params``, then the command line, which wins). ``config``
    is the sweep's composed config, or its ``multirun.yaml`` read back."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    params += list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(params)
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for batch in batches for job in batch]


def expected_jobs(root: Path) -> list[list[str]] | None:
    """The jobs the sweep in ``root`` was launched with (from its ``multirun.yaml``), or
    ``None`` when the folder does not say."""
    from omegaconf import OmegaConf

    path = root / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        return sweep_jobs(OmegaConf.load(path))
    except Exception:  # noqa: BLE001 - an unreadable multirun.yaml: fall back to what is there
        return None


def write_dataset(ds: xr.Dataset, path: Path) -> None:
    """netCDF written atomically: a reader never sees half a file."""
    atomic_write(path, ds.to_netcdf)


def write_json(obj, path: Path) -> None:
    atomic_write_text(str(path), json.dumps(json_safe(obj), indent=2))


def combine_sweep(folder: str | Path) -> xr.Dataset:
    """Merge every ``*/result.nc`` under ``folder``; failed jobs are listed in attrs.

    Missing points (failed or not yet run) are NaN, their verdict ``-1``. Swept
    dimensions holding one value only become scalar coordinates.

    Raises
    ------
    ValueError
        If ``folder`` holds no result at all.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"sweep folder {str(folder)!r}: no such folder")
    paths = sorted(root.glob(f"*/{RESULT}"), key=lambda p: (len(p.parent.name), p.parent.name))
    jobs = expected_jobs(root)
    if jobs is not None:  # a job with neither file was killed or never ran: say so there
        for num, overrides in enumerate(jobs):
            d = root / str(num)
            if not (d / RESULT).is_file() and not (d / ERROR).is_file():
                write_json({"job": str(num), "overrides": overrides,
                            "error": f"no {RESULT} and no {ERROR}: the job was killed or "
                                     "never ran"}, d / ERROR)
    errors = []
    for p in sorted(root.glob(f"*/{ERROR}")):
        try:
            errors.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            errors.append({"job": p.parent.name, "error": f"unreadable error file: {exc}"})
    parts = []
    for p in list(paths):
        try:
            parts.append(xr.load_dataset(p))
        except Exception as exc:  # noqa: BLE001 - truncated, not netCDF, unreadable
            paths.remove(p)
            errors.append({"job": p.parent.name, "error": f"{p}: unreadable {RESULT} "
                           f"(truncated or not netCDF: {type(exc).__name__})"})
    if not paths:
        raise ValueError(f"sweep folder {str(folder)!r}: no readable {RESULT} in any job "
                         f"folder ({len(errors)} failed jobs)")
    missing = []  # every expected point without a result: a placeholder on the grid
    if jobs is not None:
        done = {p.parent.name for p in paths}
        points = [coords_of(o) for o in jobs]
        swept = [k for k in points[0] if len({repr(c.get(k)) for c in points}) > 1]
        for num, coords in enumerate(points):
            if str(num) not in done:
                missing.append({"job": str(num),
                                "coords": {k: coords[k] for k in swept if k in coords}})
                parts.append(_placeholder(parts[0], coords))
    merged = xr.merge(parts, join="outer", compat="no_conflicts",
                      combine_attrs="drop_conflicts")
    for var in ("verdict", "stable"):  # integer codes; missing points get -1
        merged[var] = merged[var].fillna(MISSING_VERDICT).astype("int8")
        merged[var].attrs = parts[0][var].attrs
    swept = [d for d in merged.dims if d not in POINT_DIMS]
    for d in swept:
        if merged.sizes[d] == 1:
            merged = merged.squeeze(d)
    merged.attrs.update(parts[0].attrs)
    merged.attrs.pop("job_overrides", None)
    merged.attrs["swept"] = json.dumps([d for d in merged.dims if d not in POINT_DIMS])
    merged.attrs["n_points"] = len(paths)
    merged.attrs["n_failed"] = len(errors)
    merged.attrs["failed_points"] = json.dumps(errors)
    merged.attrs["n_expected"] = len(jobs) if jobs is not None else len(paths) + len(errors)
    merged.attrs["missing_points"] = json.dumps(missing)
    return merged


def _placeholder(template: xr.Dataset, coords: dict[str, Any]) -> xr.Dataset:
    """A point with no result: every value NaN, every verdict ``missing``, on the
    template's point dimensions at ``coords``."""
    point = template
    for d in [d for d in template.dims if d not in POINT_DIMS]:
        point = point.isel({d: 0}, drop=True)
    out = xr.Dataset(coords={k: v for k, v in point.coords.items() if k in point.dims})
    for name, var in point.data_vars.items():
        if name in ("verdict", "stable"):
            fill = VERDICTS["missing"] if name == "verdict" else MISSING_VERDICT
            out[name] = xr.full_like(var, fill, dtype="int8")
        elif var.dtype.kind in "fc":
            out[name] = xr.full_like(var, float("nan"), dtype=float)
        else:
            out[name] = var
    for dim, value in coords.items():
        out = out.expand_dims({dim: [value]})
    return out


def combine_and_report(folder: str | Path, *, report: bool = True) -> xr.Dataset:
    """Combine, write ``dataset.nc`` atomically and (re)build the report in ``folder``."""
    ds = combine_sweep(folder)
    write_dataset(ds, Path(folder) / DATASET)
    if report:
        from reports import build_report

        build_report(ds, Path(folder))
    return ds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Combine a validation sweep folder into "
                                             "dataset.nc and rebuild its report.")
    ap.add_argument("folder")
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args(argv)
    try:
        ds = combine_and_report(args.folder, report=not args.no_report)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{ds.attrs['n_points']} points combined, {ds.attrs['n_failed']} failed: "
          f"{Path(args.folder) / DATASET}")
    for f in json.loads(ds.attrs["failed_points"]):
        print(f"error: job {f.get('job')}: {f.get('error')}", file=sys.stderr)
    n_missing = len(json.loads(ds.attrs["missing_points"]))
    if n_missing:
        print(f"error: {n_missing} of {ds.attrs['n_expected']} sweep points have no result "
              "(verdict 'missing' in the dataset)", file=sys.stderr)
    return 1 if ds.attrs["n_failed"] or n_missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
