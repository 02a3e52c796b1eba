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
from .batched import SLO, BatchedColocated, BatchedDisaggregated
from .system import ArrivalProcess, DisaggregatedCluster, MonolithicCluster, SimConfig, Workload
from .tokens import TokenDist

#: Marks a spec field that is not a setting (``field(metadata={"config": False})``).
NOT_A_SETTING = "config"


def _node_fields(node_type: type) -> dict[str, Any]:
    hints = typing.get_type_hints(node_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(node_type)}


def _node(node_type: type, obj: Any, **given: Any) -> Any:
    """The leaf node of a spec object (the inverse of :func:`_leaf`); ``given`` supplies
    settings the spec object does not hold itself."""
    values = dict(given)
    for name, hint in _node_fields(node_type).items():
        if name in given:
            continue
        value = getattr(obj, name)
        values[name] = _node(hint, value) if dataclasses.is_dataclass(hint) else value
    return node_type(**values)


def node_of(spec_type: type, name: str | None = None,
            first: tuple[tuple[str, type, Any], ...] = ()) -> type:
    """A plain dataclass with the settings of the frozen ``spec_type``.

    Same field names, types and defaults, mutable and unvalidated, so that Hydra can merge
    overrides into it; :func:`build` turns it into ``spec_type`` (which validates).
    Fields marked ``metadata={"config": False}`` are left out. A nested spec dataclass
    becomes a nested node. ``first`` adds settings ``(name, type, default)`` before them
    that the spec type does not hold itself.
    """
    hints = typing.get_type_hints(spec_type)
    spec = [(n, t, field(default=d)) for n, t, d in first]
    for f in dataclasses.fields(spec_type):
        if not f.init or f.metadata.get(NOT_A_SETTING) is False:
            continue
        hint = hints[f.name]
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{spec_type.__name__}.{f.name} needs a default to be a setting")
        if dataclasses.is_dataclass(hint):
            sub = node_of(hint, f"{hint.__name__}Settings")
            value = _node(sub, default)
            spec.append((f.name, sub, field(default_factory=lambda v=value: copy.deepcopy(v))))
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
#: ``arrival``: the mean rate (req/s, > 0), then the process (:class:`ArrivalProcess`).
ArrivalSettings = node_of(ArrivalProcess, "ArrivalSettings",
                          first=(("rate_per_s", float, 2.0),))
BatchedMonoSettings = node_of(BatchedColocated, "BatchedMonoSettings")
BatchedDisaggSettings = node_of(BatchedDisaggregated, "BatchedDisaggSettings")
SLOSettings = node_of(SLO, "SLOSettings")

#: The profile every batched instance uses unless it names its own: DistServe's
#: OPT-13B on one A100-80GB.
DEFAULT_PROFILE = "distserve/opt-13b_tp1"


@dataclass
class Settings:
    """Every setting of a run, with its default: the built-in default workload and clusters
    (the seed's: prompts lognormal(6.0, 0.9) at least 8 tokens, outputs lognormal(6.0,
    1.1) at least 16; 4 GPUs monolithic vs 2 prefill + 2 decode GPUs at 8000 / 2000
    tokens/s)."""

    serving: str = "fifo"  # fifo (seed: one request per GPU) | batched
    mode: str = "mono"  # mono (batched: colocated) | disagg | both
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
    # the batched serving model (serving: batched)
    profile: str = DEFAULT_PROFILE  # step-latency profile of instances that name none
    batched_mono: BatchedMonoSettings = field(  # type: ignore[valid-type]
        default_factory=BatchedMonoSettings)
    batched_disagg: BatchedDisaggSettings = field(  # type: ignore[valid-type]
        default_factory=BatchedDisaggSettings)
    slo: SLOSettings = field(default_factory=SLOSettings)  # type: ignore[valid-type]


#: Top-level keys that only one serving model reads (the other's are left out of
#: :func:`config_mapping`).
SERVING_KEYS: dict[str, tuple[str, ...]] = {
    "fifo": ("cluster_mono", "cluster_disagg"),
    "batched": ("profile", "batched_mono", "batched_disagg", "slo"),
}


# ---------------------------------------------------------------------- reading

def _merge_into(node: Any, data: Any, path: str) -> Any:
    """``node`` with the values of ``data`` merged in (a new object; ``node`` is kept).

    Unknown keys are refused by name. A token law given in another ``mode`` drops the
    old mode's values (``min_value`` stays), as the Hydra groups ``prompt_tokens=MODE``
    do, so that values of two modes never mix.
    """
    types = _node_fields(type(node))
    if isinstance(data, Mapping):
        data = dict(data)
    _check.keys(path or "config", data, tuple(types))
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

def leaf_from_mapping(node_type: type, data: Mapping[str, Any], path: str) -> Any:
    """One leaf's spec object from a mapping over the leaf's defaults (keys checked, values
    validated, errors naming ``path``): ``leaf_from_mapping(TokenSettings, {...},
    "prompt_tokens")`` is a :class:`~spec.tokens.TokenDist`."""
    return _leaf(_merge_into(node_type(), data, path), path)


def _leaf(node: Any, path: str, skip: tuple[str, ...] = ()) -> Any:
    """The spec type a leaf node stands for, built (and so validated) from its values.

    A spec type with a ``name`` field that is not a setting gets ``path`` as its name, so
    that its errors say where it sits (``batched_disagg.decode.max_num_seqs``)."""
    values = {}
    for f in dataclasses.fields(node):
        if f.name in skip:
            continue
        value = getattr(node, f.name)
        values[f.name] = (_leaf(value, f"{path}.{f.name}") if dataclasses.is_dataclass(value)
                          else value)
    spec_type = type(node).__spec_type__
    if any(f.name == "name" and f.metadata.get(NOT_A_SETTING) is False
           for f in dataclasses.fields(spec_type)):
        values["name"] = path
    return spec_type(**values)


def _with_profile(node: Any, profile: str, keys: tuple[str, ...]) -> Any:
    """A batched cluster node whose instances without a profile get the run's."""
    out = copy.deepcopy(node)
    for key in keys:
        inst = getattr(out, key)
        if inst.profile is None:
            inst.profile = profile
    return out


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
    workload = Workload(s.arrival.rate_per_s, _leaf(s.prompt_tokens, "prompt_tokens"),
                        _leaf(s.output_tokens, "output_tokens"),
                        _leaf(s.arrival, "arrival", skip=("rate_per_s",)))
    batched: dict[str, Any] = {}
    if s.serving == "batched":  # both clusters, as for fifo: compare() needs them
        batched["batched_mono"] = _leaf(_with_profile(s.batched_mono, s.profile,
                                                      ("instance",)), "batched_mono")
        batched["batched_disagg"] = _leaf(_with_profile(s.batched_disagg, s.profile,
                                                        ("prefill", "decode")),
                                          "batched_disagg")
    return SimConfig(mode=s.mode, sim_seconds=s.sim_seconds, warmup_seconds=s.warmup_seconds,
                     random_seed=s.random_seed, replications=s.replications,
                     quantiles=tuple(quantiles), workload=workload,
                     cluster_mono=_leaf(s.cluster_mono, "cluster_mono"),
                     cluster_disagg=_leaf(s.cluster_disagg, "cluster_disagg"),
                     serving=s.serving, slo=_leaf(s.slo, "slo"), **batched)


def settings_of(cfg: SimConfig) -> Settings:
    """The :class:`Settings` that build ``cfg`` (``build(settings_of(cfg)) == cfg``)."""
    w = cfg.workload
    arrival = _node(ArrivalSettings, w.arrival, rate_per_s=w.arrival_rate_per_s)
    out = Settings(serving=cfg.serving, mode=cfg.mode, sim_seconds=cfg.sim_seconds,
                   warmup_seconds=cfg.warmup_seconds, random_seed=cfg.random_seed,
                   replications=cfg.replications, quantiles=list(cfg.quantiles),
                   arrival=arrival,
                   prompt_tokens=_node(TokenSettings, w.prompt_tokens),
                   output_tokens=_node(TokenSettings, w.output_tokens),
                   cluster_mono=_node(MonoSettings, cfg.cluster_mono),
                   cluster_disagg=_node(DisaggSettings, cfg.cluster_disagg),
                   slo=_node(SLOSettings, cfg.slo))
    if cfg.batched_mono is not None:
        out.batched_mono = _node(BatchedMonoSettings, cfg.batched_mono)
    if cfg.batched_disagg is not None:
        out.batched_disagg = _node(BatchedDisaggSettings, cfg.batched_disagg)
    return out


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


def config_mapping(cfg: SimConfig) -> dict[str, Any]:
    """The settings of ``cfg`` as a plain mapping, without the sections that only the other
    serving model reads (``config_from_mapping(config_mapping(cfg)) == cfg``)."""
    out = to_mapping(settings_of(cfg))
    other = "batched" if cfg.serving == "fifo" else "fifo"
    for key in SERVING_KEYS[other]:
        out.pop(key, None)
    return out


#: The built-in default settings as a plain mapping (the seed's default workload).
DEFAULTS: dict[str, Any] = to_mapping(Settings())
