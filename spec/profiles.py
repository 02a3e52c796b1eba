"""Profiles, models and GPUs shipped as data under ``conf/`` (with their provenance), by name.

- ``distserve/<model>_tp<N>``, ``distserve-vllm/<model>_tp<N>``: DistServe's fitted
  A100-80GB coefficients (``conf/profiles/distserve*/``, written by
  ``scripts/make_distserve_profiles.py``).
- ``roofline/<model>_<gpu>_tp<N>``: a roofline profile of ``conf/models/<model>.yaml`` on
  ``conf/gpus/<gpu>.yaml`` with the assumptions of ``conf/profiles/roofline.yaml``.
- ``rates/<prefill tokens/s>_<decode tokens/s>``: the seed model as a profile.
- a path to a YAML file in the format of the shipped ones (``form:`` and its fields).
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path
from typing import Any

from .loader import read_yaml_mapping as _read_yaml
from .profile import FORMS, GPUSpec, ModelConfig, Profile

_ROOFLINE = re.compile(r"^roofline/(?P<model>[^_/]+)_(?P<gpu>[^_/]+)_tp(?P<tp>\d+)$")
_RATES = re.compile(r"^rates/(?P<p>[0-9.eE+-]+)_(?P<d>[0-9.eE+-]+)$")


def _conf() -> Path:
    return Path(str(resources.files("conf")))


def _names(folder: str) -> list[str]:
    return sorted(p.stem for p in (_conf() / folder).glob("*.yaml"))


def _data_file(name: str, folder: str, what: str, shipped: list[str]) -> Path:
    """A shipped data file by name, or a path the user gives (``.yaml``, ``.yml``, ``.json``)."""
    if name in shipped:
        return _conf() / folder / f"{name}.yaml"
    if name.endswith((".yaml", ".yml", ".json")):
        if not Path(name).is_file():
            raise ValueError(f"{what} = {name!r}: no such file")
        return Path(name)
    raise ValueError(f"{what} = {name!r}: unknown; shipped: {', '.join(shipped)} "
                     "(or give a file path)")


def model_names() -> list[str]:
    """Models shipped in ``conf/models``."""
    return _names("models")


def gpu_names() -> list[str]:
    """GPUs shipped in ``conf/gpus``."""
    return _names("gpus")


@functools.cache
def load_model(name: str) -> ModelConfig:
    """A shipped model (``llama-3.1-8b``) or a Hugging Face ``config.json`` / YAML path."""
    path = _data_file(name, "models", "model", model_names())
    if path.suffix == ".json":
        import json

        data = json.loads(path.read_text())
    else:
        data = _read_yaml(path, "model")
    return ModelConfig.from_hf_config(data, name=name if path.parent == _conf() / "models"
                                      else path.stem)


@functools.cache
def load_gpu(name: str) -> GPUSpec:
    """A shipped GPU (``h100``) or a YAML path with the fields of :class:`GPUSpec`."""
    path = _data_file(name, "gpus", "gpu", gpu_names())
    data = _read_yaml(path, "gpu")
    try:
        return GPUSpec(**data)
    except TypeError as exc:
        raise ValueError(f"gpu = {name!r}: {exc}") from None


def profile_names() -> list[str]:
    """Every profile shipped by name (roofline ones for every model, GPU and TP 1-8)."""
    out = []
    for folder in ("distserve", "distserve-vllm"):
        out += [f"{folder}/{n}" for n in _names(f"profiles/{folder}")]
    out += [f"roofline/{m}_{g}_tp{tp}" for m in model_names() for g in gpu_names()
            for tp in (1, 2, 4, 8)]
    return out


def _from_mapping(name: str, data: dict[str, Any]) -> Profile:
    form = data.get("form")
    source = str(data.get("source", ""))
    kv = data.get("kv_capacity_tokens")
    kv_bytes = data.get("kv_bytes_per_token")
    tp = data.get("tp", 1)
    if form == "distserve":
        unit = {"ms": 1e-3, "s": 1.0, "us": 1e-6}.get(data.get("time_unit", "ms"))
        if unit is None:
            raise ValueError(f"profile {name}: time_unit = {data.get('time_unit')!r}: "
                             "must be one of ms, s, us")
        missing = [k for k in ("prefill", "decode_small", "decode_large", "decode_threshold")
                   if k not in data]
        if missing:
            raise ValueError(f"profile {name}: missing {', '.join(missing)}")
        return Profile.distserve(tuple(data["prefill"]), tuple(data["decode_small"]),
                                 tuple(data["decode_large"]), data["decode_threshold"],
                                 name=name, time_unit_s=unit, tp=tp, kv_capacity_tokens=kv,
                                 kv_bytes_per_token=kv_bytes, source=source)
    if form == "mixed":
        return Profile.mixed(*(data.get(k, 0.0) for k in FORMS["mixed"]), name=name, tp=tp,
                             kv_capacity_tokens=kv, kv_bytes_per_token=kv_bytes, source=source)
    if form == "rates":
        return Profile.rates(data.get("prefill_tokens_per_s"), data.get("decode_tokens_per_s"),
                             name=name, tp=tp, kv_capacity_tokens=kv,
                             kv_bytes_per_token=kv_bytes, source=source)
    if form == "roofline" and "model" not in data:  # fitted coefficients (s), not a model
        missing = [k for k in FORMS["roofline"] if k not in data]
        if missing:
            raise ValueError(f"profile {name}: form roofline needs model and gpu, or every "
                             f"coefficient ({', '.join(missing)} missing)")
        return Profile(name, "roofline", tuple(data[k] for k in FORMS["roofline"]), tp=tp,
                       kv_capacity_tokens=kv, kv_bytes_per_token=kv_bytes, source=source)
    if form == "roofline":
        return roofline(data["model"], data["gpu"], data.get("tp", 1), name=name,
                        **{k: data[k] for k in _ROOFLINE_KEYS if k in data})
    raise ValueError(f"profile {name}: form = {form!r}: must be one of distserve, mixed, "
                     "rates, roofline")


_ROOFLINE_KEYS = ("flops_efficiency", "bandwidth_efficiency", "overhead_s",
                  "activation_reserve_bytes_per_gpu", "memory_utilisation")


def roofline(model: str, gpu: str, tp: int, name: str | None = None, **assumptions) -> Profile:
    """The roofline profile of a shipped (or given) model on a GPU, with the shipped
    assumptions of ``conf/profiles/roofline.yaml`` unless overridden."""
    base = _read_yaml(_conf() / "profiles" / "roofline.yaml", "profile")
    base.update(assumptions)
    m, g = load_model(model), load_gpu(gpu)
    src = (f"roofline of {model} (conf/models) on {gpu} (conf/gpus), assumptions "
           + ", ".join(f"{k}={base[k]:g}" for k in _ROOFLINE_KEYS))
    return Profile.roofline(m, g, int(tp), name=name or f"roofline/{model}_{gpu}_tp{tp}",
                            source=src, **{k: base[k] for k in _ROOFLINE_KEYS})


@functools.lru_cache(maxsize=256)
def load_profile(name: str) -> Profile:
    """The profile called ``name`` (see the module docstring), or one in a YAML file.

    Raises
    ------
    ValueError
        ``profile = 'name': unknown ...`` listing the shipped families.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"profile = {name!r}: must be a profile name or a YAML file")
    m = _ROOFLINE.match(name)
    if m:
        return roofline(m["model"], m["gpu"], int(m["tp"]), name=name)
    m = _RATES.match(name)
    if m:
        try:
            return Profile.rates(float(m["p"]), float(m["d"]), name=name)
        except ValueError as exc:
            raise ValueError(f"profile = {name!r}: {exc}") from None
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ValueError(f"profile = {name!r}: no such file")
        return _from_mapping(name, _read_yaml(path, "profile"))
    shipped = _conf() / "profiles" / f"{name}.yaml"
    if "/" in name and shipped.is_file():
        return _from_mapping(name, _read_yaml(shipped, "profile"))
    raise ValueError(
        f"profile = {name!r}: unknown; give distserve/<model>_tp<N> or "
        "distserve-vllm/<model>_tp<N> (opt-13b tp 1, 2, 4; opt-66b tp 2, 3, 4, 8), "
        "roofline/<model>_<gpu>_tp<N> (models " + ", ".join(model_names()) + "; GPUs "
        + ", ".join(gpu_names()) + "), rates/<prefill>_<decode> (tokens/s), or a YAML file")
