"""The Hydra side of the one settings schema (:mod:`spec.schema`), and the CLI's error handling.

The apps' schemas extend :class:`spec.schema.Settings` (every model setting and its
default) with run options. Hydra refuses wrong types and unknown keys at the command line
against these dataclasses (``arrival.rate_per_s=abc``, ``arival.rate_per_s=3``); ranges
are checked once, by ``spec`` (:func:`to_sim_config`), before any work starts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from functools import wraps
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

import spec
from spec.schema import Settings


@dataclass
class AppConfig(Settings):
    """``python -m simulation`` / ``python -m analytic``: the model plus run options."""

    config: str | None = None  # a seed-style YAML file; command-line overrides apply on top
    trace: str | None = None  # requests from a file (CSV or JSON) or a shipped trace name
    trace_rate_per_s: float | None = None  # time-scale the trace to this mean rate
    dump_ttft: str | None = None
    engine: str = "fast"  # fast (exact FIFO recursion) | simpy (event-driven, general)
    progress: bool | None = None
    method: str = "kimura"
    wait_law: str | None = None  # python -m analytic: residual (default) | gamma | exponential
    linking: str | None = None  # python -m analytic: timescale (default) | qna | poisson
    output: str = "auto"  # auto (a table on a terminal, else JSON) | table | json


@dataclass
class GridConf:
    """``python -m validate +sweep=grid``: the fidelity grid of issue 14 (one job that
    simulates every point and prices every closed form; :mod:`validate.fidelity`)."""

    total_gpus: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    prefill_share: list[float] = field(
        default_factory=lambda: [0.125, 0.25, 0.5, 0.75, 0.875])  # splits 1:7 .. 7:1
    load: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 0.8, 0.9, 0.95])
    token_sigma: list[float] = field(default_factory=lambda: [0.3, 0.9, 1.5])
    replications: int = 20  # >= 5: each point's interval uses three control variates
    workers: int = 1  # processes simulating points in parallel (same numbers for any value)
    reference: str | None = None  # a stored simulation of the grid (JSON) to price instead


@dataclass
class ValidationConf:
    """How ``python -m validate`` compares the witnesses (see validate.point.Thresholds)."""

    methods: list[str] = field(default_factory=lambda: ["mmc", "allen_cunneen", "cosmetatos",
                                                        "whitt93", "kimura", "kimura_exact"])
    tolerance: float = 0.05  # agree: inside the simulation CI widened by 5 %
    band: float = 0.15  # diverge: outside the CI widened by 15 %
    confidence: float = 0.95
    report: bool = True
    # cluster-size sweeps: a GPU budget shared by both architectures
    total_gpus: int | None = None  # mono gets all; disagg splits it
    prefill_gpus: int | None = None  # disagg prefill pool (default: prefill_share of total)
    prefill_share: float = 0.5
    rate_per_gpu: float | None = None  # arrival rate = rate_per_gpu * total_gpus
    # measured runs to replay (+validation=measured): shipped names or run folders
    measured: list[str] = field(default_factory=list)
    measured_gpu: str | None = None  # default: the GPU named by each run's kernel profile
    measured_form: str = "mixed"  # the step-profile form fitted to the kernel bundle
    measured_step_overhead_s: float = 0.0  # engine time a step outside the kernels, if known
    grid: GridConf | None = None  # +sweep=grid sets it: the fidelity grid instead of a point


@dataclass
class ValidateConfig(AppConfig):
    """``python -m validate``: the model, run options and the comparison settings.

    Validation always runs both architectures on the same requests; its run sizes keep
    the default sweep well under two minutes on 2 cores while the 95 % CI half-width of
    mean TTFT stays within 3 % up to offered load 0.8.
    """

    mode: str = "both"
    sim_seconds: float = 40000.0
    warmup_seconds: float = 4000.0
    replications: int = 20
    validation: ValidationConf = field(default_factory=ValidationConf)


#: Top-level keys of the model settings (the rest of an app's config are run options).
MODEL_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Settings))


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (config.yaml and validate.yaml extend them)."""
    ConfigStore.instance().store(name="schema", node=AppConfig)
    ConfigStore.instance().store(name="validate_schema", node=ValidateConfig)


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


def to_sim_config(cfg: DictConfig, overrides: list[str] | None = None) -> spec.SimConfig:
    """Validate a composed Hydra config into a :class:`spec.SimConfig`.

    With ``config=FILE`` the seed-style YAML file gives the values and only the
    command line's ``key=value`` overrides (``overrides``; by default the running job's)
    are applied on top of it.
    """
    from omegaconf.errors import MissingMandatoryValue

    from spec import schema

    try:
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        raise ValueError(f"{exc.full_key} is missing: give it on the command line "
                         f"({exc.full_key}=VALUE)") from None
    assert isinstance(container, dict)
    if cfg.config is None:
        model = {k: v for k, v in container.items() if k in MODEL_KEYS}
        return schema.build(schema.from_mapping(model))
    base = schema.from_mapping(spec.loader.read_yaml_mapping(cfg.config))
    dotlist = []
    for item in (overrides if overrides is not None else _task_overrides()):
        key = item.lstrip("+").split("=", 1)[0]
        top = key.split(".")[0]
        if top not in MODEL_KEYS and (top == "hydra" or top in cfg):
            continue  # a run option or Hydra's own
        if top not in MODEL_KEYS or ("." not in key and is_dataclass(getattr(base, key))):
            raise ValueError(f"{item!r}: with config=FILE only key=value overrides of the "
                             "model apply (no config-group choices such as scenario=)")
        dotlist.append(item.lstrip("+"))
    over = OmegaConf.to_container(OmegaConf.from_dotlist(dotlist))
    assert isinstance(over, dict)
    return schema.build(schema.from_mapping(over, base=base))


def unknown_keys(cfg: DictConfig, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Keys of ``cfg`` its schema does not have, each with the settings its node does
    have: what ``+key=value`` forces past Hydra's struct check (``+arival.rate_per_s=3``
    would otherwise be silently ignored, and in a sweep become a fake swept axis)."""
    kind = OmegaConf.get_type(cfg)
    if not is_dataclass(kind):
        return []
    known = sorted(f.name for f in fields(kind))
    out = []
    for key in cfg.keys():
        name = f"{prefix}{key}"
        if key not in known:
            out.append((name, known))
            continue
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_none():
            out += unknown_keys(node, name + ".")
    return out


def check_known_keys(cfg: DictConfig) -> None:
    """Refuse, naming it and what is there instead, a key the app's schema does not have."""
    bad = unknown_keys(cfg)
    if bad:
        name, known = bad[0]
        where = f"settings of {name.rsplit('.', 1)[0]}" if "." in name else "top-level settings"
        raise ValueError(f"{name}: no such setting (misspelled? a '+' prefix adds keys Hydra "
                         f"would refuse); {where}: {', '.join(known)}")


OUTPUTS = ("auto", "table", "json")


def emit(cfg: DictConfig, out: dict, columns: dict, title: str,
         notes: list[str] | tuple[str, ...] = ()) -> None:
    """Print the result as ``cfg.output`` says: a table for a person (``table``, or
    ``auto`` on a terminal) or the JSON ``out``; an unstable architecture is announced in
    the table's first lines, or on stderr beside the JSON."""
    import json

    from fileio import json_safe
    from fileio.terminal import format_table, unstable_warnings

    table = cfg.output == "table" or (cfg.output == "auto" and sys.stdout.isatty())
    if table:  # the table opens with the warning itself
        print(format_table(columns, title, notes))
        return
    print(json.dumps(json_safe(out), indent=2, allow_nan=False))
    for w in unstable_warnings(columns):
        print(f"warning: {w}", file=sys.stderr)


def check_output(cfg: DictConfig) -> None:
    """Refuse an unknown ``output`` before any work."""
    if cfg.output not in OUTPUTS:
        raise ValueError(f"output = {cfg.output!r}: must be one of {', '.join(OUTPUTS)}")


def exit_on_bad_input(main: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Refuse unknown keys, then turn a ``ValueError`` from validation into one line on
    stderr and exit status 2."""

    @wraps(main)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            check_known_keys(cfg)
            if "output" in cfg:
                check_output(cfg)
            return main(cfg)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except BrokenPipeError:  # `python -m simulation | head`: the reader left, fine
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(0) from None

    return wrapper
