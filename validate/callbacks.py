"""Hydra callback of validation sweeps: refuse a bad sweep before any job starts, and
combine the jobs' results into one dataset and report when the sweep ends."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict


def sweep_overrides(config: DictConfig) -> list[list[str]]:
    """Every job's overrides, expanded as Hydra's basic sweeper expands them (the sweep's
    own ``hydra.sweeper.params``, then the command line, which wins)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    params += list(config.hydra.overrides.task)
    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create(config_loader=loader)
    batches = BasicSweeper.split_arguments(parser.parse_overrides(params), None)
    return [list(job) for batch in batches for job in batch]


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Compose and validate every point; one bad value stops the sweep here."""
        from hydra.core.global_hydra import GlobalHydra

        from conf.schema import check_known_keys
        from validate.app import build_point

        loader = GlobalHydra.instance().config_loader()
        jobs = sweep_overrides(config)
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
