"""Replay a measured serving run through the batched model and compare, request by request.

A *run folder* holds what a measured run left (the layout of the shipped one,
``conf/measured/vllm-0.19_rtxpro6000_llama-3.1-8b``):

- ``run/meta.json``: the engine and its settings (``engine_kwargs``: ``max_num_seqs``,
  ``max_num_batched_tokens``, ``tensor_parallel_size``);
- ``run/requests.jsonl``: one request a line, ``input_toks``, ``output_toks`` and the
  engine's ``queued_ts``, ``first_token_ts``, ``last_token_ts`` (seconds);
- ``profile/``: the GPU's kernel-profile bundle (:mod:`simulation.calibrate`);
- ``model_config.json``: the model's Hugging Face config.

The replay takes the requests' arrivals (``queued_ts``, from the first) and token counts,
one colocated instance with the engine's settings (vLLM >= 0.6's V1 scheduler is
``chunked``: decodes first, then chunks within ``max_num_batched_tokens``; 16-token
blocks; the first token at the end of the prefill), a KV capacity from the GPU's memory
(:func:`spec.profile.kv_capacity_tokens` with vLLM's default ``gpu_memory_utilization``
0.9 and the roofline's activation reserve), and a step profile fitted to the kernel
bundle alone. Nothing is fitted to the measured latencies. It then compares, per
request and in distribution:

- TTFT ``first_token_ts - queued_ts``;
- TPOT ``(last_token_ts - first_token_ts) / (output_toks - 1)`` (requests with >= 2 tokens);
- E2E ``last_token_ts - queued_ts``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import xarray as xr

from spec import BatchedColocated, Instance
from spec.profile import ModelConfig, kv_capacity_tokens
from spec.profiles import gpu_names, load_gpu, load_model

#: The runs shipped with the package, by name (``conf/measured/<name>``).
SHIPPED = "vllm-0.19_rtxpro6000_llama-3.1-8b"
METRICS = ("ttft_s", "tpot_s", "e2e_s")
STATISTICS = ("mean", "p50", "p90", "p99")
#: vLLM's default ``gpu_memory_utilization``.
GPU_MEMORY_UTILISATION = 0.9


def shipped_runs() -> list[str]:
    """Names of the measured runs in ``conf/measured``."""
    root = Path(str(resources.files("conf"))) / "measured"
    return sorted(p.name for p in root.iterdir() if (p / "run" / "requests.jsonl").is_file())


def run_folder(name: str) -> Path:
    """A shipped run by name, or a folder path."""
    if name in shipped_runs():
        return Path(str(resources.files("conf"))) / "measured" / name
    p = Path(name)
    if not (p / "run" / "requests.jsonl").is_file():
        raise ValueError(f"validation.measured: {name!r}: not a shipped run "
                         f"({', '.join(shipped_runs())}) nor a folder with run/requests.jsonl")
    return p


@dataclass(frozen=True)
class MeasuredRun:
    """A measured run's requests (sorted by arrival) and its engine settings."""

    name: str
    folder: Path
    meta: dict
    engine: dict
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray  # nan for one-token requests
    e2e_s: np.ndarray


def _tpot(first: np.ndarray, last: np.ndarray, out: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(out >= 2, (last - first) / (out - 1), np.nan)


def read_run(folder: str | Path, name: str | None = None) -> MeasuredRun:
    """Read ``run/meta.json`` and ``run/requests.jsonl``; errors name file, line and field."""
    folder = Path(folder)
    meta_path = folder / "run" / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ValueError(f"measured run: {meta_path}: missing") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"measured run: {meta_path}: not JSON ({exc})") from None
    engine = meta.get("engine_kwargs") if isinstance(meta, dict) else None
    if not isinstance(engine, dict):
        raise ValueError(f"measured run: {meta_path}: no engine_kwargs mapping")
    path = folder / "run" / "requests.jsonl"
    fields = ("queued_ts", "first_token_ts", "last_token_ts", "input_toks", "output_toks")
    cols: dict[str, list[float]] = {f: [] for f in fields}
    with path.open() as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise ValueError(f"measured run: {path}:{line_no}: not JSON") from None
            for f in fields:
                v = rec.get(f) if isinstance(rec, dict) else None
                ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                if ok and f.endswith("_toks"):
                    ok = v >= 1 and float(v).is_integer()
                if not ok:
                    raise ValueError(f"measured run: {path}:{line_no}: {f} = {v!r}: must be "
                                     + ("a whole number >= 1" if f.endswith("_toks")
                                        else "a finite number (s)"))
                cols[f].append(float(v))
    if not cols["queued_ts"]:
        raise ValueError(f"measured run: {path}: no requests")
    a = {f: np.array(v) for f, v in cols.items()}
    bad = np.flatnonzero((a["first_token_ts"] < a["queued_ts"])
                         | (a["last_token_ts"] < a["first_token_ts"]))
    if bad.size:
        raise ValueError(f"measured run: {path}:{bad[0] + 1}: timestamps out of order "
                         "(queued <= first token <= last token)")
    order = np.argsort(a["queued_ts"], kind="stable")
    a = {f: v[order] for f, v in a.items()}
    t0 = a["queued_ts"][0]
    return MeasuredRun(
        name or folder.name, folder, meta, engine, a["queued_ts"] - t0, a["input_toks"],
        a["output_toks"], a["first_token_ts"] - a["queued_ts"],
        _tpot(a["first_token_ts"], a["last_token_ts"], a["output_toks"]),
        a["last_token_ts"] - a["queued_ts"])


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def gpu_of(hardware: str) -> str:
    """The shipped GPU whose name matches a bundle's ``hardware`` label (``RTXPRO6000`` ->
    ``rtx-pro-6000``), ignoring case and punctuation."""
    for g in gpu_names():
        if _norm(g) == _norm(hardware):
            return g
    raise ValueError(f"kernel profile hardware = {hardware!r}: no GPU of that name in "
                     f"conf/gpus ({', '.join(gpu_names())}); give validation.measured_gpu")


@dataclass(frozen=True)
class ReplaySetup:
    """What the replay runs: the instance, and how each of its numbers was obtained."""

    cluster: BatchedColocated
    fit: object  # simulation.calibrate.Fit
    model: ModelConfig
    gpu: str
    kv_capacity_tokens: int
    notes: tuple[str, ...]


def setup(run: MeasuredRun, gpu: str | None = None, form: str = "mixed",
          step_overhead_s: float = 0.0) -> ReplaySetup:
    """The instance of the measured engine: settings from ``meta.json``, KV capacity from
    the GPU's memory, the step profile fitted to the kernel bundle (form ``form``), plus
    ``step_overhead_s`` a step when the engine's time outside the kernels was measured
    apart (0 by default: the kernels alone)."""
    from simulation.calibrate import calibrate, read_bundle

    eng = run.engine
    tp = int(eng.get("tensor_parallel_size") or 1)
    seqs = int(eng.get("max_num_seqs") or 256)
    budget = int(eng.get("max_num_batched_tokens") or 2048)
    model = load_model(str(run.folder / "model_config.json"))
    bundle = read_bundle(run.folder / "profile", tp)
    gpu = gpu or gpu_of(str(bundle.meta.get("hardware", "")))
    g = load_gpu(gpu)
    from spec.loader import read_yaml_mapping

    assumptions = read_yaml_mapping(Path(str(resources.files("conf"))) / "profiles"
                                    / "roofline.yaml", "profile")
    reserve = float(assumptions["activation_reserve_bytes_per_gpu"])
    kv = kv_capacity_tokens(model, g.memory_bytes, tp, GPU_MEMORY_UTILISATION, reserve)
    if kv < 1:
        raise ValueError(f"measured run {run.name}: the model's weights leave no KV cache on "
                         f"{tp} x {gpu}")
    link = g.interconnect_bytes_per_s if tp > 1 else None
    fits = calibrate(run.folder / "profile", model, tp, (form,), kv_capacity_tokens=kv,
                     max_num_batched_tokens=budget, max_num_seqs=seqs, link_bytes_per_s=link)
    fit = fits[0]
    prof = fit.profile.with_step_overhead(step_overhead_s) if step_overhead_s else fit.profile
    inst = Instance(profile=prof, kv_capacity_tokens=kv, block_size=16,
                    max_num_seqs=seqs, max_num_batched_tokens=budget, policy="chunked")
    cluster = BatchedColocated(instances=1, instance=inst, first_token="prefill")
    notes = (f"engine: vLLM {run.meta.get('vllm_version', '?')}, {eng.get('model', '?')}",
             f"instance: tp {tp}, max_num_seqs {seqs}, max_num_batched_tokens {budget}, "
             "chunked (vLLM V1), 16-token blocks, first token at prefill end",
             f"KV capacity {kv:,} tokens: {gpu} memory x {GPU_MEMORY_UTILISATION} less "
             f"{reserve / 2**30:.0f} GiB reserve less {model.weight_bytes / 2**30:.1f} GiB of "
             f"weights, {model.kv_bytes_per_token:,} bytes a token",
             f"step profile: form {fit.form} fitted to the kernel bundle "
             f"({fit.errors['all'].points:,} step points inside the engine's limits: "
             f"median error {fit.errors['all'].median:.1%}, P90 {fit.errors['all'].p90:.1%})"
             + (f", plus {step_overhead_s * 1e3:g} ms a step given apart" if step_overhead_s
                else ", nothing added for time outside the kernels"))
    return ReplaySetup(cluster, fit, model, gpu, kv, notes)


@dataclass(frozen=True)
class Replay:
    """A measured run and its replay: per-request measured and simulated latencies."""

    run: MeasuredRun
    setup: ReplaySetup
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    preemptions: int


def replay(run: MeasuredRun, gpu: str | None = None, form: str = "mixed",
           step_overhead_s: float = 0.0) -> Replay:
    """Run the measured requests through the batched model (compiled engine; every request
    measured, no warm-up cut: the measured run has none)."""
    from simulation.batched_fast import simulate_batched_fast
    from simulation.requests import Requests

    s = setup(run, gpu, form, step_overhead_s)
    req = Requests(run.arrival_s, run.prompt_tokens, run.output_tokens)
    times, _ = simulate_batched_fast(req, s.cluster)
    first, last = np.asarray(times.first_token_s), np.asarray(times.last_token_s)
    return Replay(run, s, first - run.arrival_s, _tpot(first, last, run.output_tokens),
                  last - run.arrival_s, int(np.sum(times.preemptions)))


def statistics(x: np.ndarray) -> dict[str, float]:
    """Mean and the 50th, 90th, 99th percentiles (linear interpolation, numpy's default)
    over the finite values."""
    x = x[np.isfinite(x)]
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"mean": float(x.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def _peer(folder: Path) -> str:
    """What another simulator reported on the run (``run/peer_simulator_summary.txt``)."""
    p = folder / "run" / "peer_simulator_summary.txt"
    return p.read_text() if p.is_file() else ""


def to_dataset(replays: list[Replay]) -> xr.Dataset:
    """``measured``, ``simulated`` and ``rel_error = simulated / measured - 1`` by
    ``run x metric x statistic``; per-request values by ``run x request``."""
    runs = [r.run.name for r in replays]
    shape = (len(runs), len(METRICS), len(STATISTICS))
    meas, sim = np.full(shape, np.nan), np.full(shape, np.nan)
    n_max = max(len(r.run.arrival_s) for r in replays)
    per = {f"{src}_{m}": np.full((len(runs), n_max), np.nan)
           for src in ("measured", "simulated") for m in METRICS}
    for i, r in enumerate(replays):
        for j, m in enumerate(METRICS):
            mv, sv = getattr(r.run, m), getattr(r, m)
            ms, ss = statistics(mv), statistics(sv)
            meas[i, j] = [ms[k] for k in STATISTICS]
            sim[i, j] = [ss[k] for k in STATISTICS]
            per[f"measured_{m}"][i, :len(mv)] = mv
            per[f"simulated_{m}"][i, :len(sv)] = sv
    dims = ("run", "metric", "statistic")
    ds = xr.Dataset(
        {"measured": (dims, meas, {"units": "s"}), "simulated": (dims, sim, {"units": "s"}),
         "rel_error": (dims, sim / meas - 1.0, {"units": "1"}),
         **{k: (("run", "request"), v, {"units": "s"}) for k, v in per.items()},
         "requests": ("run", [len(r.run.arrival_s) for r in replays]),
         "preemptions": ("run", [r.preemptions for r in replays]),
         "kv_capacity_tokens": ("run", [r.setup.kv_capacity_tokens for r in replays]),
         "setup": ("run", ["\n".join(r.setup.notes) for r in replays]),
         "peer": ("run", [_peer(r.run.folder) for r in replays])},
        coords={"run": runs, "metric": list(METRICS), "statistic": list(STATISTICS),
                "request": np.arange(n_max)})
    ds.attrs["title"] = "Measured runs replayed through the batched model"
    ds.attrs["kind"] = "measured"
    return ds


def format_table(ds: xr.Dataset) -> str:
    """Per run: each metric's statistics, measured vs simulated (ms) and the error."""
    out = []
    for run in ds.run.values:
        d = ds.sel(run=run)
        out.append(f"{run}: {int(d.requests)} requests, {int(d.preemptions)} preemptions "
                   "in the replay")
        out.append(f"  {'metric':8s} {'stat':5s} {'measured ms':>12s} {'simulated ms':>13s} "
                   f"{'error':>8s}")
        for m in METRICS:
            for s in STATISTICS:
                x = d.sel(metric=m, statistic=s)
                out.append(f"  {m[:-2].upper():8s} {s:5s} {1e3 * float(x.measured):12.1f} "
                           f"{1e3 * float(x.simulated):13.1f} {float(x.rel_error):+8.1%}")
    return "\n".join(out)
