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

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _check
from .system import DisaggregatedCluster, MonolithicCluster, SimConfig, Workload
from .tokens import MODES as TOKEN_MODES
from .tokens import TokenDist

#: The built-in default: the seed's default workload and clusters.
DEFAULTS: dict[str, Any] = {
    "mode": "mono",
    "sim_seconds": 3600.0,
    "warmup_seconds": 300.0,
    "random_seed": 42,
    "replications": 1,
    "quantiles": [0.5, 0.9, 0.99],
    "arrival": {"rate_per_s": 2.0},
    "prompt_tokens": {"mode": "log", "mean": 6.0, "sigma": 0.9, "min_value": 8},
    "output_tokens": {"mode": "log", "mean": 6.0, "sigma": 1.1, "min_value": 16},
    "cluster_mono": {"num_gpus": 4, "prefill_tokens_per_s": 8000.0,
                     "decode_tokens_per_s": 2000.0},
    "cluster_disagg": {"prefill_gpus": 2, "decode_gpus": 2, "prefill_tokens_per_s": 8000.0,
                       "decode_tokens_per_s": 2000.0, "kv_transfer_s_per_token": 0.0},
}

_TOKEN_KEYS = ("mode", "mean", "sigma", "std", "p50", "p90", "min_value")


def token_dist_from_mapping(name: str, data: Mapping[str, Any]) -> TokenDist:
    """A :class:`TokenDist` from ``{mode, mean, sigma | std, p50, p90, min_value}``."""
    data = _check.keys(name, dict(data), _TOKEN_KEYS)
    mode = data.get("mode", "log")
    _check.choice(f"{name}.mode", mode, tuple(TOKEN_MODES))
    return TokenDist(name=name, **data)


def merge_mappings(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; a token distribution given in a new mode replaces the old one."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            if key.endswith("_tokens") and value.get("mode", out[key].get("mode")) != \
                    out[key].get("mode"):
                out[key] = {"min_value": out[key].get("min_value", 1)}
            out[key] = merge_mappings(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def config_from_mapping(data: Mapping[str, Any] | None = None) -> SimConfig:
    """Validate a seed-format mapping (merged over :data:`DEFAULTS`) into a SimConfig.

    Raises
    ------
    ValueError
        Naming the first bad field, its value and the allowed range.
    """
    data = _check.keys("config", dict(data or {}), tuple(DEFAULTS))
    d = merge_mappings(DEFAULTS, data)
    arrival = _check.keys("arrival", d["arrival"], ("rate_per_s",))
    prompt = token_dist_from_mapping("prompt_tokens", d["prompt_tokens"])
    output = token_dist_from_mapping("output_tokens", d["output_tokens"])
    mono = _check.keys("cluster_mono", d["cluster_mono"],
                       ("num_gpus", "prefill_tokens_per_s", "decode_tokens_per_s"))
    disagg = _check.keys("cluster_disagg", d["cluster_disagg"],
                         ("prefill_gpus", "decode_gpus", "prefill_tokens_per_s",
                          "decode_tokens_per_s", "kv_transfer_s_per_token"))
    quantiles = d["quantiles"]
    if not isinstance(quantiles, (list, tuple)):
        raise ValueError(f"quantiles = {quantiles!r}: must be a list of numbers in (0, 1)")
    return SimConfig(
        mode=d["mode"],
        sim_seconds=d["sim_seconds"],
        warmup_seconds=d["warmup_seconds"],
        random_seed=d["random_seed"],
        replications=d["replications"],
        quantiles=tuple(quantiles),
        workload=Workload(arrival["rate_per_s"], prompt, output),
        cluster_mono=MonolithicCluster(**mono),
        cluster_disagg=DisaggregatedCluster(**disagg),
    )


def load_config(path: str | Path) -> SimConfig:
    """Read a seed-style YAML file into a validated :class:`SimConfig`.

    Raises
    ------
    ValueError
        If the file is missing, is not a YAML mapping, or holds a bad value (named).
    """
    return config_from_mapping(read_yaml_mapping(path))


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML file holds, or a ``ValueError`` naming the file."""
    import yaml  # PyYAML ships with hydra-core's omegaconf; imported here to keep spec light

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config = {str(path)!r}: no such file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"config = {str(path)!r}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"config = {str(path)!r}: must hold a YAML mapping of settings")
    return data


def config_to_mapping(cfg: SimConfig) -> dict[str, Any]:
    """The seed-format mapping of a SimConfig (round-trips through config_from_mapping)."""
    w, m, d = cfg.workload, cfg.cluster_mono, cfg.cluster_disagg
    return {
        "mode": cfg.mode,
        "sim_seconds": cfg.sim_seconds,
        "warmup_seconds": cfg.warmup_seconds,
        "random_seed": cfg.random_seed,
        "replications": cfg.replications,
        "quantiles": list(cfg.quantiles),
        "arrival": {"rate_per_s": w.arrival_rate_per_s},
        "prompt_tokens": w.prompt_tokens.as_dict(),
        "output_tokens": w.output_tokens.as_dict(),
        "cluster_mono": {"num_gpus": m.num_gpus, "prefill_tokens_per_s": m.prefill_tokens_per_s,
                         "decode_tokens_per_s": m.decode_tokens_per_s},
        "cluster_disagg": {"prefill_gpus": d.prefill_gpus, "decode_gpus": d.decode_gpus,
                           "prefill_tokens_per_s": d.prefill_tokens_per_s,
                           "decode_tokens_per_s": d.decode_tokens_per_s,
                           "kv_transfer_s_per_token": d.kv_transfer_s_per_token},
    }
