"""Build a :class:`~spec.system.SimConfig` from the seed documents' YAML format.

The format, as the seed user guide writes it (every key optional; a missing key takes
the built-in default of :data:`DEFAULTS`)::

    mode: mono                  # mono | disagg | both
    sim_seconds: 3600
    warmup_seconds: 300
    random_seed: 42
    arrival:
      rate_per_s: 2.0
    prompt_tokens: {mode: log, mean: 6.0, sigma: 0.9, min_value: 8}
    output_tokens: {mode: log, mean: 6.0, sigma: 1.1, min_value: 16}
    cluster_mono: {num_gpus: 4, prefill_tokens_per_s: 8000, decode_tokens_per_s: 2000}
    cluster_disagg: {prefill_gpus: 2, decode_gpus: 2,
                     prefill_tokens_per_s: 8000, decode_tokens_per_s: 2000}

Unknown keys are refused with their name, so a typo never silently takes a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import schema
from .system import SimConfig
from .tokens import TokenDist

#: The built-in default: the seed's default workload and clusters (from :mod:`spec.schema`).
DEFAULTS: dict[str, Any] = schema.DEFAULTS

def token_dist_from_mapping(name: str, data: Mapping[str, Any]) -> TokenDist:
    """A :class:`TokenDist` from ``{mode, mean, sigma | std, p50, p90, min_value}``."""
    return schema.leaf_from_mapping(schema.TokenSettings, data, name)


def config_from_mapping(data: Mapping[str, Any] | None = None) -> SimConfig:
    """Validate a seed-format mapping (merged over :data:`DEFAULTS`) into a SimConfig.

    Raises
    ------
    ValueError
        Naming the first bad field, its value and the allowed range.
    """
    return schema.build(schema.from_mapping(data))


def load_config(path: str | Path) -> SimConfig:
    """Read a seed-style YAML file into a validated :class:`SimConfig`.

    Raises
    ------
    ValueError
        If the file is missing, is not a YAML mapping, or holds a bad value (named).
    """
    return config_from_mapping(read_yaml_mapping(path))


def read_yaml_mapping(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The mapping a YAML file holds, or a ``ValueError`` naming the setting ``what`` and
    the file."""
    import yaml  # PyYAML ships with hydra-core's omegaconf; imported here to keep spec light

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} = {str(path)!r}: no such file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} = {str(path)!r}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} = {str(path)!r}: must hold a YAML mapping")
    return data


def config_to_mapping(cfg: SimConfig) -> dict[str, Any]:
    """The seed-format mapping of a SimConfig (round-trips through config_from_mapping)."""
    return schema.config_mapping(cfg)
