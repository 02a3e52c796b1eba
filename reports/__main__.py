"""``python -m reports PATH``: rebuild the report from a saved dataset (``dataset.nc``) or
a sweep folder holding one. Writes report.md, report.html and figures/ beside it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import xarray as xr

from .build import build_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", help="dataset.nc, or a folder that holds dataset.nc")
    ap.add_argument("--out", help="folder for the report (default: beside the dataset)")
    args = ap.parse_args(argv)
    path = Path(args.path)
    nc = path / "dataset.nc" if path.is_dir() else path
    if not nc.is_file():
        print(f"error: path = {str(path)!r}: no dataset.nc there (combine a sweep folder with "
              "python -m validate.combine FOLDER)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else nc.parent
    try:
        ds = xr.load_dataset(nc)
    except Exception as exc:  # noqa: BLE001 - any reader failure means "not a dataset"
        print(f"error: path = {str(nc)!r}: not a readable netCDF dataset "
              f"({type(exc).__name__}); give a dataset.nc written by python -m validate",
              file=sys.stderr)
        return 2
    if "measured" not in ds and "value" not in ds:
        print(f"error: path = {str(nc)!r}: a netCDF file, but not a validation dataset "
              "(no 'value' or 'measured' variable)", file=sys.stderr)
        return 2
    if ds.attrs.get("kind") == "measured":
        from .measured import build_measured_report

        files = build_measured_report(ds, out)
    else:
        files = build_report(ds, out)
    print(f"report: {files['html']} and {files['markdown']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
