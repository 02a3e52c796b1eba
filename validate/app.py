"""``python -m validate``: one point, or a Hydra multirun sweep (``+sweep=rates``).

Each job simulates both architectures on the same requests with replications, prices
them with every analytic method, and writes its ``result.nc`` atomically (or its
``error.json`` when it fails, so the other points survive). At the end of a sweep the
callback (:mod:`validate.callbacks`) merges them into ``dataset.nc`` and writes the
report. A single run writes both into its own output folder and prints the table.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml
from omegaconf import DictConfig, OmegaConf

import analytic
from conf.schema import exit_on_bad_input, to_sim_config
from simulation.runner import ENGINES
from spec import SimConfig, config_to_mapping

from .combine import DATASET, ERROR, RESULT, coords_of, write_dataset, write_json
from .point import Thresholds, format_table, run_point


def _budget_total(v: DictConfig, unit: str) -> int | None:
    """``validation.total_gpus`` checked with the settings that go with it (``None``: no
    budget, and then neither ``prefill_gpus`` nor ``rate_per_gpu`` may be given)."""
    if v.total_gpus is None:
        for key in ("prefill_gpus", "rate_per_gpu"):
            if v[key] is not None:
                raise ValueError(f"validation.{key} = {v[key]!r}: needs validation.total_gpus")
        return None
    total = v.total_gpus
    if not (isinstance(total, int) and total >= 2):
        raise ValueError(f"validation.total_gpus = {total!r}: must be a whole number >= 2 "
                         f"(the disaggregated cluster needs a prefill and a decode {unit})")
    if not (0.0 < v.prefill_share < 1.0):
        raise ValueError(f"validation.prefill_share = {v.prefill_share!r}: must be in (0, 1)")
    if v.rate_per_gpu is not None and not (isinstance(v.rate_per_gpu, int | float)
                                           and v.rate_per_gpu > 0):
        raise ValueError(f"validation.rate_per_gpu = {v.rate_per_gpu!r}: must be > 0")
    return total


def _budget_rate(out: DictConfig, v: DictConfig, total: int) -> DictConfig:
    """``arrival.rate_per_s = rate_per_gpu * total_gpus`` where ``rate_per_gpu`` is given."""
    if v.rate_per_gpu is not None:
        out.arrival.rate_per_s = float(v.rate_per_gpu) * total
    return out


def _apply_budget(cfg: DictConfig) -> DictConfig:
    """Turn ``validation.total_gpus`` / ``prefill_gpus`` / ``rate_per_gpu`` into clusters."""
    v = cfg.validation
    total = _budget_total(v, "GPU")
    if total is None:
        return cfg
    prefill = v.prefill_gpus if v.prefill_gpus is not None else \
        min(total - 1, max(1, round(total * v.prefill_share)))
    if not 1 <= prefill <= total - 1:
        raise ValueError(f"validation.prefill_gpus = {prefill}: must be in [1, "
                         f"validation.total_gpus - 1 = {total - 1}]")
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    out.cluster_mono.num_gpus = total
    out.cluster_disagg.prefill_gpus = int(prefill)
    out.cluster_disagg.decode_gpus = total - int(prefill)
    return _budget_rate(out, v, total)


def _batched_budget(point: DictConfig, config: SimConfig, total: int) -> DictConfig:
    """A GPU budget of ``total`` (:func:`_budget_total`; with ``prefill_gpus`` or
    ``prefill_share``, and ``rate_per_gpu``) for the batched clusters: the colocated
    cluster gets every GPU as instances of its ``tp``; the disaggregated one splits them
    into prefill and decode instances of their own ``tp``. Refuses a budget the
    instances do not divide."""
    v = point.validation
    mono, disagg = config.batched_mono, config.batched_disagg
    tp_mono, tp_pre, tp_dec = mono.instance.tp, disagg.prefill.tp, disagg.decode.tp
    if total % tp_mono:
        raise ValueError(f"validation.total_gpus = {total}: must be a multiple of the "
                         f"colocated instance's tp = {tp_mono}")
    prefill = v.prefill_gpus if v.prefill_gpus is not None else \
        tp_pre * max(1, round(total * v.prefill_share / tp_pre))
    decode = total - prefill if isinstance(prefill, int) else -1
    if not (isinstance(prefill, int) and prefill >= tp_pre and prefill % tp_pre == 0
            and decode >= tp_dec and decode % tp_dec == 0):
        raise ValueError(f"validation.prefill_gpus = {prefill!r}: must be a multiple of the "
                         f"prefill instance's tp = {tp_pre} leaving validation.total_gpus - "
                         f"prefill_gpus = {decode} GPUs, a positive multiple of the decode "
                         f"instance's tp = {tp_dec}")
    out = OmegaConf.create(OmegaConf.to_container(point, resolve=True))
    out.batched_mono.instances = total // tp_mono
    out.batched_disagg.prefill_instances = prefill // tp_pre
    out.batched_disagg.decode_instances = decode // tp_dec
    return _budget_rate(out, v, total)


def build_point(cfg: DictConfig,
                overrides: list[str] | None = None) -> tuple[SimConfig, dict[str, Any]]:
    """Validate a composed ``validate`` config into the simulated point and run options.

    Raises
    ------
    ValueError
        Naming the first bad field, before any work.
    """
    v = cfg.validation
    if cfg.serving == "batched":
        return _build_batched_point(cfg, overrides)
    unknown = [m for m in v.methods if m not in analytic.METHODS]
    if unknown or not v.methods:
        raise ValueError(f"validation.methods = {list(v.methods)}: each must be one of "
                         f"{', '.join(analytic.METHODS)}")
    thresholds = _check_run_options(cfg)
    point = _apply_budget(cfg)
    point.mode = "both"
    config = to_sim_config(point, overrides)
    if config.replications < 2:
        raise ValueError(f"replications = {config.replications}: must be >= 2 for "
                         "confidence intervals")
    return config, {"methods": tuple(v.methods), "thresholds": thresholds,
                    "engine": cfg.engine, "confidence": float(v.confidence),
                    "serving": "fifo"}


def _check_run_options(cfg: DictConfig) -> Thresholds:
    """The comparison settings both serving models share, checked."""
    if cfg.engine not in ENGINES:
        raise ValueError(f"engine = {cfg.engine!r}: must be one of {', '.join(ENGINES)}")
    if not 0.0 < cfg.validation.confidence < 1.0:
        raise ValueError(f"validation.confidence = {cfg.validation.confidence!r}: must be "
                         "in (0, 1)")
    return Thresholds(float(cfg.validation.tolerance), float(cfg.validation.band))


def _build_batched_point(cfg: DictConfig, overrides: list[str] | None
                         ) -> tuple[SimConfig, dict[str, Any]]:
    """``serving=batched``: the batched clusters (``batched_mono`` colocated against
    ``batched_disagg``) on the same requests, priced by the batched closed forms."""
    v = cfg.validation
    thresholds = _check_run_options(cfg)
    point = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    point.mode = "both"
    config = to_sim_config(point, overrides)
    total = _budget_total(v, "instance")
    if total is not None:
        point = _batched_budget(point, config, total)
        config = to_sim_config(point, overrides)
    if config.replications < 2:
        raise ValueError(f"replications = {config.replications}: must be >= 2 for "
                         "confidence intervals")
    from .batched_point import CLOSED_FORM

    return config, {"methods": (CLOSED_FORM,), "thresholds": thresholds,
                    "engine": cfg.engine, "confidence": float(v.confidence),
                    "serving": "batched"}


def _job_coords() -> dict[str, Any]:
    """``{dim: value}`` for every ``key=value`` override this job got (the swept ones)."""
    from hydra.core.hydra_config import HydraConfig

    return coords_of(HydraConfig.get().overrides.task)


def provenance(config: SimConfig, options: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    """Attributes that say what produced a dataset."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("ttft-toolkit")
    except PackageNotFoundError:
        pkg = "unknown"
    from analytic.symbolic import BATCHED_FORMULAS, FORMULAS, latex

    th = options["thresholds"]
    batched = options.get("serving") == "batched"
    return {
        "title": "Batched serving validation: simulation vs closed forms (TTFT, TPOT, E2E)"
                 if batched else "TTFT validation: simulation vs closed forms",
        "serving": options.get("serving", "fifo"),
        "package_version": pkg,
        "engine": options["engine"],
        "engine_note": "fast = compiled iteration loop, equal per request to the SimPy "
                       "model" if batched else
                       "fast = exact FIFO recursion, equal per request to the SimPy model",
        "methods": " ".join(options["methods"]),
        "default_method": options["methods"][0] if batched else analytic.DEFAULT_METHOD,
        "tolerance": th.tolerance,
        "band": th.band,
        "confidence": options["confidence"],
        "random_seed": config.random_seed,
        "replications": config.replications,
        "sim_seconds": config.sim_seconds,
        "warmup_seconds": config.warmup_seconds,
        "config_yaml": yaml.safe_dump(config_to_mapping(config), sort_keys=False),
        "app_config_yaml": OmegaConf.to_yaml(cfg),
        "formulas_latex": json.dumps({k: [v[0], latex(k)] for k, v in (
            BATCHED_FORMULAS if batched else FORMULAS).items()}),
    }


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def run_job(cfg: DictConfig) -> xr.Dataset:
    """One point: validate, simulate, price, write ``result.nc``."""
    from hydra.core.hydra_config import HydraConfig

    out = Path(HydraConfig.get().runtime.output_dir)
    config, options = build_point(cfg)
    if options["serving"] == "batched":
        from .batched_point import run_batched_point

        ds = run_batched_point(config, thresholds=options["thresholds"],
                               engine=options["engine"], confidence=options["confidence"])
    else:
        ds = run_point(config, methods=options["methods"], thresholds=options["thresholds"],
                       engine=options["engine"], confidence=options["confidence"])
    ds.attrs.update(provenance(config, options, cfg))
    coords = _job_coords() if _multirun() else {}
    for dim, value in coords.items():
        ds = ds.expand_dims({dim: [value]})
    write_dataset(ds, out / RESULT)
    return ds


def _worst_half_width(ds: xr.Dataset) -> float:
    hw = (ds.ci_high - ds.ci_low) / 2 / ds.value.sel(source="simulation")
    hw = hw.sel(statistic="mean_ttft_s").where(ds.offered_load <= 0.8)
    return float(hw.max()) if np.isfinite(hw).any() else math.nan


def run_measured(cfg: DictConfig, out: Path) -> xr.Dataset:
    """``+validation=measured``: replay each measured run, write ``dataset.nc``, print the
    table and write the report (:mod:`validate.measured`, :mod:`reports.measured`)."""
    from simulation.calibrate import FIT_FORMS

    from . import measured

    v = cfg.validation
    if v.measured_form not in FIT_FORMS:
        raise ValueError(f"validation.measured_form = {v.measured_form!r}: must be one of "
                         f"{', '.join(FIT_FORMS)}")
    over = v.measured_step_overhead_s
    if not (isinstance(over, int | float) and 0.0 <= over < 1.0):
        raise ValueError(f"validation.measured_step_overhead_s = {over!r}: must be in [0, 1) s")
    folders = [(name, measured.run_folder(str(name))) for name in v.measured]
    runs = [measured.read_run(folder, Path(str(name)).name) for name, folder in folders]
    replays = [measured.replay(r, v.measured_gpu, str(v.measured_form),
                               float(v.measured_step_overhead_s)) for r in runs]
    ds = measured.to_dataset(replays)
    write_dataset(ds, out / DATASET)
    print(measured.format_table(ds))
    if v.report:
        from reports.measured import build_measured_report

        build_measured_report(ds, out)
    print(f"\ndataset and report: {out}")
    return ds


def run_grid(cfg: DictConfig, out: Path) -> xr.Dataset:
    """``+sweep=grid``: simulate the fidelity grid (or read a stored simulation of it),
    price every closed form, write ``dataset.nc``, ``simulation.json`` and ``fidelity.md``
    and print the conclusion and table (:mod:`validate.fidelity`)."""
    from . import fidelity

    g = cfg.validation.grid
    axes = fidelity.GridAxes.from_mapping(g)
    for key, low in (("replications", fidelity.MIN_REPLICATIONS), ("workers", 1)):
        if not (isinstance(g[key], int) and g[key] >= low):
            raise ValueError(f"validation.grid.{key} = {g[key]!r}: must be a whole number "
                             f">= {low}")
    base = to_sim_config(cfg)
    if g.reference:
        doc = fidelity.read_reference(g.reference)
        if fidelity.GridAxes.from_mapping(doc["axes"]) != axes:
            raise ValueError(f"validation.grid.reference = {g.reference!r}: simulated on "
                             f"other axes ({doc['axes']}) than validation.grid's "
                             f"({axes.to_mapping()})")
        if fidelity.grid_model(doc["base_config"]) != fidelity.grid_model(base):
            raise ValueError(f"validation.grid.reference = {g.reference!r}: simulated with "
                             "another workload or cluster than this config's")
    else:
        doc = fidelity.reference_document(axes, base, seed=base.random_seed,
                                          replications=g.replications, workers=g.workers)
    ds = fidelity.price_grid(doc["points"], base)
    paths = fidelity.write_grid_outputs(ds, doc, out)
    print(paths["report"].read_text())
    print(f"dataset, simulation and report: {out}")
    return ds


@exit_on_bad_input
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    if cfg.validation.grid is not None:
        if _multirun():
            raise ValueError("validation.grid: the fidelity grid is one job that runs every "
                             "point; use +sweep=grid without other sweeps")
        run_grid(cfg, Path(HydraConfig.get().runtime.output_dir))
        return
    if cfg.validation.measured:
        if _multirun():
            raise ValueError("validation.measured: the replay of measured runs is one job; "
                             "list the runs in validation.measured instead of sweeping")
        run_measured(cfg, Path(HydraConfig.get().runtime.output_dir))
        return
    if not _multirun():
        ds = run_job(cfg)
        out = Path(HydraConfig.get().runtime.output_dir)
        write_dataset(ds, out / DATASET)
        print(format_table(ds))
        if cfg.validation.report:
            from reports import build_report

            build_report(ds, out)
        print(f"\ndataset and report: {out}")
        return
    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        ds = run_job(cfg)
    except Exception as exc:  # one failed point must never lose the others
        write_json({"job": out.name, "overrides": list(HydraConfig.get().overrides.task),
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc()}, out / ERROR)
        print(f"point {out.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return
    rate = ds.value.sel(source="simulation", statistic="mean_ttft_s")
    print(f"point {out.name}: {_job_coords()} "
          f"mean TTFT mono {float(rate.sel(architecture='mono').squeeze()):.4f} s, "
          f"disagg {float(rate.sel(architecture='disagg').squeeze()):.4f} s")
