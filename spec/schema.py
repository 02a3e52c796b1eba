"""The one schema of every setting: names, types, defaults, and the one conversion to spec.

Every entry point reads settings through this module: the Hydra apps (``conf.schema``
stores :class:`Settings` in Hydra's ConfigStore), seed-style YAML files
(:func:`spec.load_config`) and the Python API (:func:`spec.config_from_mapping`).

- A *leaf node* (a token law, a cluster) is generated from the frozen spec type it
  builds (:func:`node_of`): the same field names, types and defaults. A new field of a
  leaf is therefore one line in the spec type plus its range check there.
- :class:`Settings` is the layout of the file format: which leaves sit where, and the
  defaults that differ per place (the prompt and output token laws).
- :func:`from_mapping` reads a mapping into :class:`Settings`, refusing unknown keys by
  name; :func:`build` converts it to the validated :class:`~spec.system.SimConfig` once
  (the spec types check every range); :func:`settings_of` and :func:`to_mapping` go back.

This module imports nothing beyond the standard library and ``spec``.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _check
from .system import DisaggregatedCluster, MonolithicCluster, SimConfig, Workload
from .tokens import TokenDist

#: Marks a spec field that is not a setting (``field(metadata={"config": False})``).
NOT_A_SETTING = "config"


def node_of(spec_type: type, name: str | None = None, **defaults: Any) -> type:
    """A plain dataclass with the settings of the frozen ``spec_type``.

    Same field names, types and defaults (``defaults`` override them), mutable and
    unvalidated, so that Hydra can merge overrides into it; :func:`build` turns it into
    ``spec_type`` (which validates). Fields marked ``metadata={"config": False}`` are
    left out. A nested spec dataclass becomes a nested node.
    """
    hints = typing.get_type_hints(spec_type)
    spec = []
    for f in dataclasses.fields(spec_type):
        if not f.init or f.metadata.get(NOT_A_SETTING) is False:
            continue
        hint = hints[f.name]
        if f.name in defaults:
            default = defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{spec_type.__name__}.{f.name} needs a default to be a setting")
        if dataclasses.is_dataclass(hint):
            sub = node_of(hint)
            hint = sub
            value = default if default is not None else hint()
            spec.append((f.name, hint, field(default_factory=lambda v=value: copy.deepcopy(v))))
        elif isinstance(default, (list, dict)):
            spec.append((f.name, hint, field(default_factory=lambda v=default: copy.deepcopy(v))))
        else:
            spec.append((f.name, hint, field(default=default)))
    cls = dataclasses.make_dataclass(name or f"{spec_type.__name__}Settings", spec)
    cls.__module__ = __name__
    cls.__spec_type__ = spec_type  # type: ignore[attr-defined]
    cls.__doc__ = f"Settings of :class:`{spec_type.__module__}.{spec_type.__name__}`."
    return cls


TokenSettings = node_of(TokenDist, "TokenSettings")
MonoSettings = node_of(MonolithicCluster, "MonoSettings")
DisaggSettings = node_of(DisaggregatedCluster, "DisaggSettings")


@dataclass
class ArrivalSettings:
    """``arrival``: the arrival process."""

    rate_per_s: float = 2.0  # Poisson arrival rate (> 0)


@dataclass
class Settings:
    """Every setting of a run, with its default: the built-in default workload and clusters
    (the seed's: prompts lognormal(6.0, 0.9) at least 8 tokens, outputs lognormal(6.0,
    1.1) at least 16; 4 GPUs monolithic vs 2 prefill + 2 decode GPUs at 8000 / 2000
    tokens/s)."""

    mode: str = "mono"  # mono | disagg | both
    sim_seconds: float = 3600.0  # arrivals in [0, sim_seconds); the run then drains
    warmup_seconds: float = 300.0  # requests arriving earlier are not measured
    random_seed: int = 42
    replications: int = 1
    quantiles: list[float] = field(default_factory=lambda: [0.5, 0.9, 0.99])
    arrival: ArrivalSettings = field(default_factory=ArrivalSettings)
    prompt_tokens: TokenSettings = field(  # type: ignore[valid-type]
        default_factory=lambda: TokenSettings(mode="log", mean=6.0, sigma=0.9, min_value=8))
    output_tokens: TokenSettings = field(  # type: ignore[valid-type]
        default_factory=lambda: TokenSettings(mode="log", mean=6.0, sigma=1.1, min_value=16))
    cluster_mono: MonoSettings = field(default_factory=MonoSettings)  # type: ignore[valid-type]
    cluster_disagg: DisaggSettings = field(  # type: ignore[valid-type]
        default_factory=DisaggSettings)


# ---------------------------------------------------------------------- reading

def _node_fields(node_type: type) -> dict[str, Any]:
    hints = typing.get_type_hints(node_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(node_type)}


def _merge_into(node: Any, data: Any, path: str) -> Any:
    """``node`` with the values of ``data`` merged in (a new object; ``node`` is kept).

    Unknown keys are refused by name. A token law given in another ``mode`` drops the
    old mode's values (``min_value`` stays), as the Hydra groups ``prompt_tokens=MODE``
    do, so that values of two modes never mix.
    """
    types = _node_fields(type(node))
    _check.keys(path or "config", data if isinstance(data, dict) else
                (dict(data) if isinstance(data, Mapping) else data), tuple(types))
    out = copy.deepcopy(node)
    spec_type = getattr(type(node), "__spec_type__", None)
    modes = getattr(spec_type, "MODE_FIELDS", None)
    if modes and "mode" in data and data["mode"] != out.mode:
        for name in {n for wanted in modes.values() for n in wanted}:
            setattr(out, name, None)
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if dataclasses.is_dataclass(types[key]):
            setattr(out, key, _merge_into(getattr(out, key), value, where))
        else:
            setattr(out, key, copy.deepcopy(value))
    return out


def from_mapping(data: Mapping[str, Any] | None = None,
                 base: Settings | None = None) -> Settings:
    """Read a seed-format mapping into :class:`Settings`, over ``base`` (the defaults).

    Keys are checked (unknown ones refused with the allowed ones listed); values are
    checked when :func:`build` makes the spec types.
    """
    return _merge_into(base if base is not None else Settings(), dict(data or {}), "")


# ---------------------------------------------------------------------- spec types

def _leaf(node: Any, **extra: Any) -> Any:
    """The spec type a leaf node stands for, built (and so validated) from its values."""
    values = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        values[f.name] = _leaf(value) if dataclasses.is_dataclass(value) else value
    return type(node).__spec_type__(**values, **extra)


def build(settings: Settings) -> SimConfig:
    """Convert :class:`Settings` to the validated :class:`~spec.system.SimConfig`.

    Raises
    ------
    ValueError
        Naming the first bad field, its value and the allowed range.
    """
    s = settings
    quantiles = s.quantiles
    if not isinstance(quantiles, (list, tuple)):
        raise ValueError(f"quantiles = {quantiles!r}: must be a list of numbers in (0, 1)")
    workload = Workload(s.arrival.rate_per_s, _leaf(s.prompt_tokens, name="prompt_tokens"),
                        _leaf(s.output_tokens, name="output_tokens"))
    return SimConfig(mode=s.mode, sim_seconds=s.sim_seconds, warmup_seconds=s.warmup_seconds,
                     random_seed=s.random_seed, replications=s.replications,
                     quantiles=tuple(quantiles), workload=workload,
                     cluster_mono=_leaf(s.cluster_mono), cluster_disagg=_leaf(s.cluster_disagg))


def _node(node_type: type, obj: Any) -> Any:
    """The leaf node of a spec object (the inverse of :func:`_leaf`)."""
    values = {}
    for name, hint in _node_fields(node_type).items():
        value = getattr(obj, name)
        values[name] = _node(hint, value) if dataclasses.is_dataclass(hint) else value
    return node_type(**values)


def settings_of(cfg: SimConfig) -> Settings:
    """The :class:`Settings` that build ``cfg`` (``build(settings_of(cfg)) == cfg``)."""
    w = cfg.workload
    return Settings(mode=cfg.mode, sim_seconds=cfg.sim_seconds,
                    warmup_seconds=cfg.warmup_seconds, random_seed=cfg.random_seed,
                    replications=cfg.replications, quantiles=list(cfg.quantiles),
                    arrival=ArrivalSettings(w.arrival_rate_per_s),
                    prompt_tokens=_node(TokenSettings, w.prompt_tokens),
                    output_tokens=_node(TokenSettings, w.output_tokens),
                    cluster_mono=_node(MonoSettings, cfg.cluster_mono),
                    cluster_disagg=_node(DisaggSettings, cfg.cluster_disagg))


def to_mapping(settings: Any) -> dict[str, Any]:
    """The plain mapping of :class:`Settings` (or of any node); unset (``None``) values of
    leaves are left out, so a token law shows only its mode's fields."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_mapping(value)
        elif value is not None:
            out[f.name] = copy.deepcopy(value)
    return out


#: The built-in default settings as a plain mapping (the seed's default workload).
DEFAULTS: dict[str, Any] = to_mapping(Settings())
