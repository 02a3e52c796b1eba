"""Hydra callback of validation sweeps: refuse a bad sweep before any job starts, and
combine the jobs' results into one dataset and report when the sweep ends."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

#: The sweep folder of this process and whether its end was reached: if a launcher dies
#: mid-sweep (a killed joblib worker aborts the batch), ``validate.__main__`` combines
#: what finished and names what did not.
SWEEP_STATE: dict[str, Any] = {"folder": None, "ended": False}


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Compose and validate every point; one bad value stops the sweep here."""
        from hydra.core.global_hydra import GlobalHydra

        from conf.schema import check_known_keys
        from validate.app import build_point
        from validate.combine import ERROR, RESULT, sweep_jobs

        folder = Path(config.hydra.sweep.dir)
        if folder.is_dir() and (any(folder.glob(f"*/{RESULT}")) or
                                any(folder.glob(f"*/{ERROR}"))):
            print(f"error: hydra.sweep.dir = {str(folder)!r} already holds a sweep's results; "
                  "a second run would be merged with them: give a new folder or delete it",
                  file=sys.stderr)
            raise SystemExit(2)
        SWEEP_STATE.update(folder=folder, ended=False)
        loader = GlobalHydra.instance().config_loader()
        jobs = sweep_jobs(config)
        for overrides in jobs:
            job_cfg = loader.load_sweep_config(config, overrides)
            with open_dict(job_cfg):
                del job_cfg["hydra"]  # the job sees no hydra node (and it cannot resolve here)
            try:
                check_known_keys(job_cfg)
                build_point(job_cfg, list(overrides))
            except ValueError as exc:
                print(f"error: {exc} (sweep point {' '.join(overrides)})", file=sys.stderr)
                raise SystemExit(2) from None
        print(f"sweep of {len(jobs)} points, all valid; results in {config.hydra.sweep.dir}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from validate.combine import DATASET, combine_and_report

        SWEEP_STATE["ended"] = True
        folder = Path(config.hydra.sweep.dir)
        try:
            ds = combine_and_report(folder, report=bool(config.validation.report))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        print(f"combined {ds.attrs['n_points']} points into {folder / DATASET}"
              + ("; report in " + str(folder / "report.html") if config.validation.report
                 else ""))
        if ds.attrs["n_failed"]:
            print(f"error: {ds.attrs['n_failed']} sweep point(s) failed; see "
                  f"failed_points in {folder / DATASET}", file=sys.stderr)
            raise SystemExit(1)
