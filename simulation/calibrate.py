"""Step-latency profiles fitted to measured kernel timings (a kernel-profile bundle).

A *kernel-profile bundle* (the format LLMServingSim's profiler writes; ``FORMAT.md`` of
the shipped measured run documents it) holds, for one GPU, model and dtype, one layer's
kernel latencies measured with vLLM:

- ``tp<N>/dense.csv`` ``layer,tokens,time_us``: token-wise kernels (projections, MLP,
  norms, rotary embedding, the embedding lookup, the final norm) by batch tokens;
- ``tp<N>/per_sequence.csv`` ``layer,sequences,time_us``: the LM head and the sampler by
  sequences in the step;
- ``tp<N>/attention.csv`` ``prefill_chunk,kv_prefill,n_decode,kv_decode,time_us``: one
  layer's attention for a step of at most one prefill chunk (after ``kv_prefill`` cached
  tokens) and ``n_decode`` decodes (each with ``kv_decode`` cached tokens);
- ``meta.yaml``: GPU, vLLM version, the engine limits it was profiled to.

Every row of ``attention.csv`` is one step composition. Its measured time is the sum of
the kernels that step runs (:func:`step_points`)::

    t = L (sum_k m_k dense_k(T) + attention) + embedding(T) + final_norm(T)
        + lm_head(S) + sampler(S) [+ all-reduce(T) for tp > 1]

with ``L`` the model's layers, ``T = chunk + n_decode`` the step's tokens, ``S`` its
sequences, ``m_k = 2`` for ``layernorm`` (before attention and before the MLP) and 1 for
every other per-layer kernel, dense and per-sequence kernels read by linear interpolation
over their grid (extrapolated from the top two points), as the format prescribes. For
``tp > 1`` the bundle's per-rank timings exclude communication, so a ring all-reduce of
the hidden states twice a layer is added, ``4 L (tp - 1) / tp * T h b / link``.

:func:`fit` then fits the forms of :mod:`spec.profile` (``mixed``, ``distserve``,
``roofline``) to those points by least squares on relative error, every coefficient
constrained to be >= 0 (a time never falls when work is added), with the three kinds of
step (decode only, prefill only, both) weighted equally, and reports each form's error
against the bundle's own points (median, P90, worst; by kind). Nothing here sees a
serving measurement: a replay (:mod:`validate.measured`) can then test the profile on
one.

Command line::

    python -m simulation.calibrate BUNDLE --model CONFIG.json --tp 1 -o profile.yaml
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spec import _check
from spec.loader import read_yaml_mapping
from spec.profile import FORM_IDS, FORMS, ModelConfig, Profile

#: Dense kernels run once a step (not once a layer).
ONCE_PER_STEP = ("embedding", "final_layernorm")
#: Dense kernels run twice a layer (the norm before attention and the one before the MLP).
TWICE_PER_LAYER = ("layernorm",)
#: The kinds of step the fit weights equally.
KINDS = ("decode", "prefill", "mixed")


# --------------------------------------------------------------------------- reading
def _read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple]:
    """Rows of a bundle CSV: first column text when ``columns[0]`` is ``layer``, the
    rest numbers; every error names the file, the row and the column."""
    if not path.is_file():
        raise ValueError(f"kernel profile: {path}: missing")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != columns:
            raise ValueError(f"kernel profile: {path}: header must be {','.join(columns)}, "
                             f"got {','.join(header or [])!s}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(columns):
                raise ValueError(f"kernel profile: {path}:{line}: {len(row)} fields, "
                                 f"expected {len(columns)}")
            out: list = []
            for name, text in zip(columns, row, strict=True):
                if name == "layer":
                    out.append(text.strip())
                    continue
                try:
                    v = float(text)
                except ValueError:
                    raise ValueError(f"kernel profile: {path}:{line}: column {name} = "
                                     f"{text!r}: not a number") from None
                low_ok = v > 0 if name == "time_us" else v >= 0
                if not (math.isfinite(v) and low_ok):
                    raise ValueError(f"kernel profile: {path}:{line}: column {name} = {text}: "
                                     f"must be {'> 0' if name == 'time_us' else '>= 0'}")
                out.append(v)
            rows.append(tuple(out))
    if not rows:
        raise ValueError(f"kernel profile: {path}: no rows")
    return rows


def _curves(rows: list[tuple], path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    by: dict[str, list[tuple[float, float]]] = {}
    for name, x, t in rows:
        by.setdefault(name, []).append((x, t * 1e-6))
    out = {}
    for name, pts in by.items():
        pts.sort()
        xs = np.array([p[0] for p in pts])
        if np.any(np.diff(xs) == 0):
            raise ValueError(f"kernel profile: {path}: layer {name} has a repeated point")
        out[name] = (xs, np.array([p[1] for p in pts]))
    return out


@dataclass(frozen=True)
class KernelBundle:
    """One TP degree of a kernel-profile bundle, times in seconds."""

    path: Path
    tp: int
    meta: dict
    dense: dict[str, tuple[np.ndarray, np.ndarray]]
    per_sequence: dict[str, tuple[np.ndarray, np.ndarray]]
    attention: np.ndarray = field(repr=False)  # (k, 5): chunk, kv_prefill, n_decode, kv_decode, s

    @property
    def label(self) -> str:
        m = self.meta
        return (f"{m.get('model', '?')} on {m.get('gpu', '?')} (vLLM {m.get('vllm_version', '?')}, "
                f"{m.get('variant', '?')}, tp {self.tp}, profiled {m.get('profiled_at', '?')})")

    def limit(self, key: str) -> int | None:
        v = (self.meta.get("engine_effective") or {}).get(key)
        return int(v) if isinstance(v, int | float) and v > 0 else None


def read_bundle(path: str | Path, tp: int = 1) -> KernelBundle:
    """Read ``path/meta.yaml`` and ``path/tp<tp>/{dense,per_sequence,attention}.csv``.

    Raises
    ------
    ValueError
        Naming the missing file, or the file, row and column of a bad value.
    """
    root = Path(path)
    tp = _check.whole("tp", tp, high=1024)
    if not root.is_dir():
        raise ValueError(f"kernel profile = {str(root)!r}: no such directory")
    meta = read_yaml_mapping(root / "meta.yaml", "kernel profile meta") \
        if (root / "meta.yaml").is_file() else {}
    folder = root / f"tp{tp}"
    if not folder.is_dir():
        have = sorted(p.name for p in root.glob("tp*") if p.is_dir())
        raise ValueError(f"kernel profile {root}: tp = {tp}: no folder tp{tp} "
                         f"(has {', '.join(have) or 'none'})")
    dense = _curves(_read_csv(folder / "dense.csv", ("layer", "tokens", "time_us")),
                    folder / "dense.csv")
    per = _curves(_read_csv(folder / "per_sequence.csv", ("layer", "sequences", "time_us")),
                  folder / "per_sequence.csv")
    att = np.array(_read_csv(folder / "attention.csv", ("prefill_chunk", "kv_prefill",
                                                        "n_decode", "kv_decode", "time_us")))
    att[:, 4] *= 1e-6
    for name in ("lm_head",):
        if name not in per:
            raise ValueError(f"kernel profile: {folder / 'per_sequence.csv'}: no {name} rows")
    return KernelBundle(root, tp, meta, dense, per, att)


# --------------------------------------------------------------------------- step points
def _interp(curve: tuple[np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Linear interpolation over the grid, extrapolated linearly from its top two points
    (and held at its first point below it)."""
    xs, ys = curve
    y = np.interp(x, xs, ys)
    if len(xs) >= 2:
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        y = np.where(x > xs[-1], ys[-1] + slope * (x - xs[-1]), y)
    return y


@dataclass(frozen=True)
class StepPoints:
    """Step compositions with their measured-kernel times: the seven sums of
    :mod:`spec.profile` (columns ``n_p, s_l, s_l2, s_lx, s_x, n_d, s_c``) and seconds."""

    sums: np.ndarray
    time_s: np.ndarray
    kind: np.ndarray  # index into KINDS

    def __len__(self) -> int:
        return len(self.time_s)


def step_points(bundle: KernelBundle, model: ModelConfig, *,
                max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None,
                kv_capacity_tokens: int | None = None,
                link_bytes_per_s: float | None = None) -> StepPoints:
    """Every attention row inside the engine's limits as a whole step (module docstring).

    Rows are kept when ``1 <= T <= max_num_batched_tokens``, ``n_decode <= max_num_seqs``
    and the step's KV (``chunk + kv_prefill + n_decode (kv_decode + 1)``) fits
    ``kv_capacity_tokens``; the limits default to the bundle's ``engine_effective``.
    """
    a = bundle.attention
    chunk, kvp, nd, kvd, att = a.T
    tokens = chunk + nd
    cap_t = max_num_batched_tokens or bundle.limit("max_num_batched_tokens")
    cap_s = max_num_seqs or bundle.limit("max_num_seqs")
    keep = tokens >= 1
    if cap_t:
        keep &= tokens <= cap_t
    if cap_s:
        keep &= nd <= cap_s
    if kv_capacity_tokens:
        keep &= chunk + kvp + nd * (kvd + 1) <= kv_capacity_tokens
    if not keep.any():
        raise ValueError(f"kernel profile {bundle.path}: no attention row inside the limits "
                         f"(max_num_batched_tokens {cap_t}, max_num_seqs {cap_s}, "
                         f"kv_capacity_tokens {kv_capacity_tokens})")
    chunk, kvp, nd, kvd, att, tokens = (x[keep] for x in (chunk, kvp, nd, kvd, att, tokens))
    per_layer = np.zeros_like(tokens)
    for name, curve in bundle.dense.items():
        if name in ONCE_PER_STEP:
            continue
        per_layer += (2.0 if name in TWICE_PER_LAYER else 1.0) * _interp(curve, tokens)
    seqs = (chunk > 0) + nd
    t = model.num_layers * (per_layer + att)
    for name in ONCE_PER_STEP:
        if name in bundle.dense:
            t += _interp(bundle.dense[name], tokens)
    for curve in bundle.per_sequence.values():
        t += _interp(curve, seqs)
    if bundle.tp > 1:
        if not link_bytes_per_s:
            raise ValueError("kernel profile: tp > 1 needs link_bytes_per_s (the per-direction "
                             "bandwidth between the GPUs of a tensor-parallel group): the "
                             "bundle's per-rank timings leave out the all-reduce")
        link = _check.positive("link_bytes_per_s", link_bytes_per_s)
        t += (4.0 * model.num_layers * (bundle.tp - 1) / bundle.tp * model.hidden_size
              * model.dtype_bytes / link) * tokens
    n_p = (chunk > 0).astype(float)
    sums = np.column_stack([n_p, chunk, chunk**2, chunk * kvp, np.where(chunk > 0, kvp, 0.0),
                            nd, nd * (kvd + 1)])
    kind = np.where(chunk == 0, 0, np.where(nd == 0, 1, 2))
    return StepPoints(sums, t, kind)


# --------------------------------------------------------------------------- fitting
def _predict_loop(form_id, coeffs, sums, out):  # compiled by _predictor
    for i in range(sums.shape[0]):
        out[i] = _STEP(form_id, coeffs, sums[i, 0], sums[i, 1], sums[i, 2], sums[i, 3],
                       sums[i, 4], sums[i, 5], sums[i, 6])
    return out


_STEP = None
_PREDICT = None


def predict(profile: Profile, sums: np.ndarray) -> np.ndarray:
    """Step times (s) of ``profile`` at each row of ``sums``: the very function the
    engines use (:func:`spec.profile.step_time_s`), compiled, over many points."""
    return _predict(profile.form_id, np.asarray(profile.coeffs, float), sums)


def _predict(form_id: int, coeffs: np.ndarray, sums: np.ndarray) -> np.ndarray:
    global _STEP, _PREDICT
    if _PREDICT is None:
        import numba

        from .batched_fast import _step_time_s

        _STEP = _step_time_s
        _PREDICT = numba.njit(cache=True)(_predict_loop)
    return _PREDICT(form_id, coeffs, np.ascontiguousarray(sums, float),
                    np.empty(len(sums)))


@dataclass(frozen=True)
class FitError:
    """Relative error ``predicted / measured - 1`` of a fit over one kind of step."""

    points: int
    median: float
    p90: float
    worst: float
    mean_signed: float

    @classmethod
    def of(cls, rel: np.ndarray) -> FitError:
        a = np.abs(rel)
        return cls(len(rel), float(np.median(a)), float(np.percentile(a, 90)),
                   float(a.max()), float(rel.mean()))


@dataclass(frozen=True)
class Fit:
    """A fitted profile and its errors against the points: ``errors['all']`` and one per
    kind of step (:data:`KINDS`) present."""

    profile: Profile
    errors: dict[str, FitError]

    @property
    def form(self) -> str:
        return self.profile.form


def _weights(points: StepPoints) -> np.ndarray:
    """Each kind of step present weighs the same in the sum of squares."""
    counts = np.bincount(points.kind, minlength=len(KINDS)).astype(float)
    present = (counts > 0).sum()
    return np.sqrt(1.0 / (present * counts[points.kind]))


def _nnls_relative(cols: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative least squares of ``sum_j x_j cols_j ~ y`` in relative error."""
    from scipy.optimize import nnls

    a = cols * (w / y)[:, None]
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    x, resid = nnls(a / scale, w, maxiter=50 * cols.shape[1])
    return x / scale, float(resid)


def _finish(form: str, coeffs, points: StepPoints, **kw) -> Fit:
    prof = Profile(kw.pop("name"), form, tuple(float(c) for c in coeffs), **kw)
    rel = predict(prof, points.sums) / points.time_s - 1.0
    errors = {"all": FitError.of(rel)}
    for k, kind in enumerate(KINDS):
        sel = points.kind == k
        if sel.any():
            errors[kind] = FitError.of(rel[sel])
    return Fit(prof, errors)


def _refine(form: str, x0: np.ndarray, points: StepPoints, w: np.ndarray) -> np.ndarray:
    """Bounded least squares (relative error, coefficients >= 0) from ``x0``."""
    from scipy.optimize import least_squares

    fid = FORM_IDS[form]
    y = points.time_s

    def resid(c: np.ndarray) -> np.ndarray:
        return w * (_predict(fid, c, points.sums) / y - 1.0)

    scale = np.where(x0 > 0, x0, 1e-12)
    res = least_squares(resid, np.maximum(x0, 0.0), bounds=(0.0, np.inf), x_scale=scale,
                        method="trf", max_nfev=400)
    return res.x if res.cost <= 0.5 * float(np.sum(resid(x0) ** 2)) else x0


def _fit_mixed(points: StepPoints, w: np.ndarray) -> np.ndarray:
    """Linear start with the floor inactive, then the floor and the rest refined."""
    n_p, s_l, s_l2, s_lx, s_x, n_d, s_c = points.sums.T
    mix = (n_p > 0).astype(float)
    cols = np.column_stack([np.ones_like(s_l), s_l + n_d, s_l2, s_c - n_d, n_d, s_lx, s_x,
                            mix * (s_c - n_d), mix * n_d])
    lin, _ = _nnls_relative(cols, points.time_s, w)
    floor = lin[0] + lin[1] * np.percentile(s_l + n_d, 25)
    x0 = np.array([0.0, floor, lin[0], lin[1], *lin[2:]])
    return _refine("mixed", x0, points, w)


def _fit_distserve(points: StepPoints, w: np.ndarray) -> np.ndarray:
    """DistServe's form is linear once its batch-size threshold is fixed: every decode
    count of the points is tried as the threshold, the best kept."""
    n_p, s_l, s_l2, _, _, n_d, s_c = points.sums.T
    pre = (n_p > 0).astype(float)
    best = None
    for thr in [math.inf, *sorted(set(n_d[n_d > 1].tolist()))]:
        small = (n_d < thr).astype(float)
        large = 1.0 - small
        dec_only = 1.0 - pre
        cols = np.column_stack([pre, pre * s_l, pre * s_l2,
                                dec_only * small, small * s_c, small * n_d,
                                dec_only * large, large * s_c, large * n_d])
        x, r = _nnls_relative(cols, points.time_s, w)
        if best is None or r < best[0]:
            best = (r, x, thr)
    _, x, thr = best
    thr = float(thr) if math.isfinite(thr) else float(n_d.max() + 1)
    return np.array([*x, thr])


def _fit_roofline(points: StepPoints, w: np.ndarray) -> np.ndarray:
    """Start from the compute terms fitted to prefill steps and the memory terms to
    decode steps, then refine the whole max."""
    n_p, s_l, s_l2, s_lx, s_x, n_d, s_c = points.sums.T
    comp = np.column_stack([s_l + n_d, n_p + n_d, s_lx + 0.5 * (s_l2 + s_l) + s_c])
    mem = np.column_stack([np.ones_like(s_l), s_x + s_l + s_c])
    c, _ = _nnls_relative(comp, points.time_s, w * (points.kind == 1) + 1e-9)
    m, _ = _nnls_relative(mem, points.time_s, w * (points.kind == 0) + 1e-9)
    return _refine("roofline", np.array([0.0, *c, *m, 0.0]), points, w)


_FITTERS = {"mixed": _fit_mixed, "distserve": _fit_distserve, "roofline": _fit_roofline}
FIT_FORMS = tuple(_FITTERS)


def fit(points: StepPoints, form: str = "mixed", *, name: str = "fitted",
        model: ModelConfig | None = None, tp: int = 1,
        kv_capacity_tokens: int | None = None, source: str = "") -> Fit:
    """Fit profile form ``form`` (one of :data:`FIT_FORMS`) to ``points``.

    Least squares on the relative error ``predicted / measured - 1``, the kinds of step
    weighted equally, every coefficient >= 0 (``scipy.optimize.nnls`` for the forms'
    linear parts, then ``scipy.optimize.least_squares`` with bounds for the ``max``
    terms).
    """
    _check.choice("form", form, FIT_FORMS)
    w = _weights(points)
    coeffs = _FITTERS[form](points, w)
    return _finish(form, coeffs, points, name=name, tp=tp,
                   kv_capacity_tokens=kv_capacity_tokens,
                   kv_bytes_per_token=float(model.kv_bytes_per_token) if model else None,
                   source=source)


def calibrate(bundle_path: str | Path, model: ModelConfig, tp: int = 1,
              forms: tuple[str, ...] = FIT_FORMS, *, kv_capacity_tokens: int | None = None,
              max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None,
              link_bytes_per_s: float | None = None) -> list[Fit]:
    """Read a bundle, build its step points and fit each form; best (smallest P90 over
    all points) first."""
    bundle = read_bundle(bundle_path, tp)
    points = step_points(bundle, model, max_num_batched_tokens=max_num_batched_tokens,
                         max_num_seqs=max_num_seqs, kv_capacity_tokens=kv_capacity_tokens,
                         link_bytes_per_s=link_bytes_per_s)
    source = f"fitted by simulation.calibrate to the kernel profile of {bundle.label}"
    label = str(bundle.meta.get("model") or model.name).split("/")[-1].lower()
    fits = [fit(points, f, name=f"calibrated/{label}_tp{tp}_{f}", model=model, tp=tp,
                kv_capacity_tokens=kv_capacity_tokens, source=source) for f in forms]
    return sorted(fits, key=lambda f: f.errors["all"].p90)


# --------------------------------------------------------------------------- output
def profile_yaml(fit_: Fit, points: int | None = None) -> str:
    """The fitted profile as a YAML file :func:`spec.profiles.load_profile` reads, its
    errors in the header."""
    import yaml

    p = fit_.profile
    head = [f"# {p.name}: {p.source}", "# Relative error against the bundle's own step points "
            "(predicted / measured - 1):"]
    for kind, e in fit_.errors.items():
        head.append(f"#   {kind:8s} {e.points:6d} points: median {e.median:.1%}, "
                    f"P90 {e.p90:.1%}, worst {e.worst:.1%}, mean {e.mean_signed:+.1%}")
    body: dict = {"form": p.form, "tp": p.tp}
    if p.form == "distserve":
        c = p.coeffs
        body.update(time_unit="s", prefill=list(c[0:3]), decode_small=list(c[3:6]),
                    decode_large=list(c[6:9]), decode_threshold=int(c[9]))
    else:
        body.update(dict(zip(FORMS[p.form], p.coeffs, strict=True)))
    if p.kv_capacity_tokens:
        body["kv_capacity_tokens"] = int(p.kv_capacity_tokens)
    if p.kv_bytes_per_token:
        body["kv_bytes_per_token"] = float(p.kv_bytes_per_token)
    body["source"] = p.source
    return "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False)


def error_table(fits: list[Fit]) -> str:
    """One row per form and kind of step: points, median, P90, worst, signed mean."""
    lines = [f"{'form':10s} {'steps':8s} {'points':>7s} {'median':>8s} {'P90':>8s} "
             f"{'worst':>8s} {'mean':>8s}"]
    for f in fits:
        for kind, e in f.errors.items():
            lines.append(f"{f.form:10s} {kind:8s} {e.points:7d} {e.median:8.1%} {e.p90:8.1%} "
                         f"{e.worst:8.1%} {e.mean_signed:+8.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m simulation.calibrate",
        description="Fit step-latency profiles to a kernel-profile bundle (meta.yaml, "
                    "tp<N>/dense.csv, per_sequence.csv, attention.csv); print each form's "
                    "error against the bundle's points; write the best (or --form) as YAML.")
    ap.add_argument("bundle", help="the bundle directory (holds meta.yaml and tp<N>/)")
    ap.add_argument("--model", required=True,
                    help="the model: a Hugging Face config.json, a YAML, or a shipped name")
    ap.add_argument("--tp", type=int, default=1, help="tensor parallelism (folder tp<N>)")
    ap.add_argument("--form", choices=("best", *FIT_FORMS), default="best",
                    help="the form to write (default: the smallest P90 error)")
    ap.add_argument("--kv-capacity-tokens", type=int, default=None,
                    help="KV cache size: written to the profile, and steps whose KV "
                         "would not fit are left out of the fit")
    ap.add_argument("--max-num-batched-tokens", type=int, default=None,
                    help="largest step in tokens (default: the bundle's engine limit)")
    ap.add_argument("--max-num-seqs", type=int, default=None,
                    help="most decodes a step (default: the bundle's engine limit)")
    ap.add_argument("--link-gbps", type=float, default=None,
                    help="GB/s per direction between GPUs of a TP group (tp > 1)")
    ap.add_argument("-o", "--output", help="write the profile here (YAML)")
    ap.add_argument("--json", action="store_true", help="print the errors as JSON")
    args = ap.parse_args(argv)
    from fileio import atomic_write_text
    from spec.profiles import load_model

    try:
        if args.output:
            out = Path(args.output)
            if not out.parent.exists():
                raise ValueError(f"--output {out}: directory {out.parent} does not exist")
        model = load_model(args.model)
        fits = calibrate(args.bundle, model, args.tp,
                         kv_capacity_tokens=args.kv_capacity_tokens,
                         max_num_batched_tokens=args.max_num_batched_tokens,
                         max_num_seqs=args.max_num_seqs,
                         link_bytes_per_s=args.link_gbps * 1e9 if args.link_gbps else None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    chosen = fits[0] if args.form == "best" else next(f for f in fits if f.form == args.form)
    if args.json:
        print(json.dumps({f.form: {k: vars(e) for k, e in f.errors.items()} for f in fits},
                         indent=2))
    else:
        print(f"Kernel profile: {fits[0].profile.source.split(' of ', 1)[1]}")
        print("Relative error of each fitted form against the bundle's step points "
              "(predicted / measured - 1):")
        print(error_table(fits))
        print(f"chosen: {chosen.form}" + (f" -> {args.output}" if args.output else ""))
    if args.output:
        atomic_write_text(Path(args.output), profile_yaml(chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
