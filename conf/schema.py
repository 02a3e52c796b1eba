"""The typed schema of the Hydra configs, and the one bridge from a Hydra config to spec.

Hydra refuses wrong types and unknown keys at the command line against these dataclasses
(``arrival.rate_per_s=abc``, ``arival.rate_per_s=3``); ranges are checked once, by
``spec`` (:func:`to_sim_config`), before any work starts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

import spec


@dataclass
class TokenConf:
    """A token-length law; which fields apply depends on ``mode`` (see spec.TokenDist)."""

    mode: str = "log"
    mean: float | None = None
    sigma: float | None = None
    std: float | None = None
    p50: float | None = None
    p90: float | None = None
    min_value: int = 1


@dataclass
class ArrivalConf:
    rate_per_s: float = MISSING


@dataclass
class MonoConf:
    num_gpus: int = MISSING
    prefill_tokens_per_s: float = MISSING
    decode_tokens_per_s: float = MISSING


@dataclass
class DisaggConf:
    prefill_gpus: int = MISSING
    decode_gpus: int = MISSING
    prefill_tokens_per_s: float = MISSING
    decode_tokens_per_s: float = MISSING
    kv_transfer_s_per_token: float = 0.0


@dataclass
class AppConfig:
    """``python -m simulation`` / ``python -m analytic``: the model plus run options."""

    mode: str = MISSING
    sim_seconds: float = MISSING
    warmup_seconds: float = MISSING
    random_seed: int = MISSING
    replications: int = 1
    quantiles: list[float] = field(default_factory=lambda: [0.5, 0.9, 0.99])
    arrival: ArrivalConf = field(default_factory=ArrivalConf)
    prompt_tokens: TokenConf = field(default_factory=TokenConf)
    output_tokens: TokenConf = field(default_factory=TokenConf)
    cluster_mono: MonoConf = field(default_factory=MonoConf)
    cluster_disagg: DisaggConf = field(default_factory=DisaggConf)
    # run options, not part of the model
    config: str | None = None
    dump_ttft: str | None = None
    engine: str = "fast"  # fast (exact FIFO recursion) | simpy (event-driven, general)
    progress: bool | None = None
    method: str = "kimura"


@dataclass
class ValidationConf:
    """How ``python -m validate`` compares the witnesses (see validate.point.Thresholds)."""

    methods: list[str] = field(default_factory=lambda: ["mmc", "allen_cunneen", "cosmetatos",
                                                        "whitt93", "kimura", "kimura_exact"])
    tolerance: float = 0.05
    band: float = 0.15
    confidence: float = 0.95
    report: bool = True
    # cluster-size sweeps: a GPU budget shared by both architectures
    total_gpus: int | None = None  # mono gets all; disagg splits it
    prefill_gpus: int | None = None  # disagg prefill pool (default: prefill_share of total)
    prefill_share: float = 0.5
    rate_per_gpu: float | None = None  # arrival rate = rate_per_gpu * total_gpus


@dataclass
class ValidateConfig(AppConfig):
    """``python -m validate``: the model, run options and the comparison settings."""

    validation: ValidationConf = field(default_factory=ValidationConf)


#: Keys of :class:`AppConfig` that are run options rather than the model (spec) itself.
RUN_KEYS: tuple[str, ...] = ("config", "dump_ttft", "engine", "progress", "method",
                             "validation")


def register() -> None:
    """Store the schema as ``schema`` in Hydra's ConfigStore (config.yaml extends it)."""
    ConfigStore.instance().store(name="schema", node=AppConfig)
    ConfigStore.instance().store(name="validate_schema", node=ValidateConfig)


def _model_mapping(container: dict[str, Any]) -> dict[str, Any]:
    """The spec part of a resolved config: run options dropped, unset token fields dropped."""
    out = {k: v for k, v in container.items() if k in spec.DEFAULTS}
    for key in ("prompt_tokens", "output_tokens"):
        if isinstance(out.get(key), dict):
            law = out[key]
            needed = spec.tokens.MODES.get(law.get("mode"), ())
            for name in needed:  # a group chosen without its values ('???' merges as unset)
                if law.get(name) is None:
                    raise ValueError(f"{key}.{name} is missing: mode {law['mode']!r} takes "
                                     f"{' and '.join(needed)} ({key}.{name}=VALUE)")
            out[key] = {k: v for k, v in law.items() if v is not None}
    return out


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


def to_sim_config(cfg: DictConfig) -> spec.SimConfig:
    """Validate a composed Hydra config into a :class:`spec.SimConfig`.

    With ``config=FILE`` the seed-style YAML file gives the values and only the
    command line's ``key=value`` overrides are applied on top of it.
    """
    from omegaconf.errors import MissingMandatoryValue

    try:
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        raise ValueError(f"{exc.full_key} is missing: give it on the command line "
                         f"({exc.full_key}=VALUE)") from None
    assert isinstance(container, dict)
    if cfg.config is None:
        return spec.config_from_mapping(_model_mapping(container))
    base = spec.loader.read_yaml_mapping(cfg.config)
    dotlist = []
    for item in _task_overrides():
        key = item.lstrip("+").split("=", 1)[0]
        if key in RUN_KEYS or key.startswith("hydra"):
            continue
        if "." not in key and key not in spec.DEFAULTS:
            raise ValueError(f"{item!r}: with config=FILE only key=value overrides of the "
                             "model apply (no config-group choices such as scenario=)")
        dotlist.append(item.lstrip("+"))
    over = OmegaConf.to_container(OmegaConf.from_dotlist(dotlist))
    assert isinstance(over, dict)
    return spec.config_from_mapping(spec.loader.merge_mappings(base, over))


def exit_on_bad_input(main: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn a ``ValueError`` from validation into one line on stderr and exit status 2."""

    @wraps(main)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            return main(cfg)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except BrokenPipeError:  # `python -m simulation | head`: the reader left, fine
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(0) from None

    return wrapper


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> None:
    """Produce ``path`` atomically: ``write(tmp)`` fills a temporary file beside it, which
    is then renamed over ``path``; on any failure the temporary file is removed and
    ``path`` is untouched (a reader never sees half a file)."""
    import os
    import tempfile

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def json_safe(obj: Any) -> Any:
    """NaN and infinities become ``None`` so the output is strict JSON."""
    import math

    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and callable(obj.item):
        return json_safe(obj.item())
    return obj
