"""Gather a sweep's per-job results into one Dataset, atomically; rerunnable on a partial
or interrupted sweep folder (``python -m validate.combine FOLDER``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import xarray as xr

from fileio import atomic_write, atomic_write_text, json_safe

from .point import MISSING_VERDICT

RESULT = "result.nc"
ERROR = "error.json"
DATASET = "dataset.nc"
#: Dimensions every point has; any other dimension is a swept parameter.
POINT_DIMS = ("architecture", "source", "statistic", "kind", "prob")


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
    return merged


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
    return 1 if ds.attrs["n_failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
