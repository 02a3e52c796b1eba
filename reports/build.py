"""Build the validation report from a Dataset alone: PNG figures, Markdown, and one
self-contained HTML file (figures and formulas embedded)."""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from fileio import atomic_write_text  # noqa: E402

POINT_DIMS = ("architecture", "source", "statistic", "kind", "prob")
VERDICT_NAMES = {0: "agree", 1: "close", 2: "diverge", 3: "unstable", 4: "missing",
                 -1: "n/a"}
#: Cell colours of the HTML tables by verdict (colour-blind-safe pairs with the words).
VERDICT_COLOURS = {"agree": "#cdeccd", "close": "#fdf1b8", "diverge": "#f6c4c4",
                   "unstable": "#dddddd", "missing": "#e3d4f2"}
STAT_LABELS = {"mean_ttft_s": "mean", "p50_ttft_s": "P50", "p90_ttft_s": "P90",
               "p99_ttft_s": "P99"}
AXIS_LABELS = {
    "arrival_rate_per_s": "arrival rate (requests/s)",
    "total_gpus": "GPU budget (GPUs)",
    "prefill_gpus": "prefill GPUs of the budget (GPUs)",
    "rate_per_gpu": "arrival rate per GPU (requests/s/GPU)",
    "cluster_mono_prefill_tokens_per_s": "prefill speed (tokens/s)",
    "prompt_tokens_sigma": "prompt sigma of log tokens (1)",
    "output_tokens_sigma": "output sigma of log tokens (1)",
    "kv_capacity_tokens": "KV cache per instance (tokens)",
    "arrival_cv": "arrival gaps' coefficient of variation (1)",
    "token_budget": "chunked prefill's token budget per step (tokens)",
}
REGIONS = (("rho < 0.5", 0.0, 0.5), ("0.5 <= rho < 0.8", 0.5, 0.8),
           ("0.8 <= rho < 1", 0.8, 1.0))
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def stat_labels(ds: xr.Dataset) -> dict[str, tuple[str, str]]:
    """``{statistic: (label, unit)}`` from the dataset's ``label`` and ``unit``
    coordinates (``validate.point.STATISTIC_INFO``); datasets written before them hold
    TTFT statistics in seconds."""
    out = {}
    for i, stat in enumerate(str(s) for s in ds.statistic.values):
        if "label" in ds.coords and "unit" in ds.coords:
            out[stat] = (str(ds["label"].values[i]), str(ds["unit"].values[i]))
        else:
            out[stat] = (f"{STAT_LABELS.get(stat, stat)} TTFT", "s")
    return out


def _batched(ds: xr.Dataset) -> bool:
    return ds.attrs.get("serving") == "batched"


def _unstable_label(ds: xr.Dataset) -> str:
    return "unstable (simulated backlog grows)" if _batched(ds) else \
        "unstable (offered load >= 1)"


def swept_dims(ds: xr.Dataset) -> list[str]:
    """The swept parameters: every dimension that is not a point's own."""
    return [d for d in ds.dims if d not in POINT_DIMS]


def _label(dim: str) -> str:
    return AXIS_LABELS.get(dim, dim.replace("_", " "))


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _slices(ds: xr.Dataset, x: str):
    """``(title, sub-dataset over x)`` for every combination of the other swept dims."""
    others = [d for d in swept_dims(ds) if d != x]
    combos = list(itertools.product(*(ds[d].values for d in others)))
    for combo in combos:
        sel = dict(zip(others, combo, strict=True))
        title = ", ".join(f"{_label(k).split(' (')[0]} = {v:g}" if isinstance(v, float)
                          else f"{k} = {v}" for k, v in sel.items())
        yield title, ds.sel(sel)


def _x_dim(ds: xr.Dataset) -> str | None:
    dims = swept_dims(ds)
    return max(dims, key=lambda d: ds.sizes[d]) if dims else None


def _scale(ax, values: np.ndarray) -> None:
    """Log y axis when the finite values span more than a decade, linear otherwise."""
    v = values[np.isfinite(values) & (values > 0)]
    if v.size and v.max() / v.min() > 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))


def fig_statistics(ds: xr.Dataset, x: str, title: str, path: Path) -> Path:
    """Each statistic (TTFT mean/P50/P90/P99; batched: also TPOT, E2E, attainment) vs the
    swept parameter: simulation with its CI band, one line per analytic method; one row
    (of at most four panels) per architecture."""
    stats = list(ds.statistic.values)
    names = stat_labels(ds)
    cols = min(len(stats), 4)
    per = -(-len(stats) // cols)  # rows per architecture
    n_arch = ds.sizes["architecture"]
    fig, axes = plt.subplots(n_arch * per, cols, figsize=(4.2 * cols, 3.6 * n_arch * per),
                             squeeze=False)
    xs = ds[x].values
    for r, arch in enumerate(ds.architecture.values):
        d = ds.sel(architecture=arch)
        unstable = d.stable.values != 1
        for c, stat in enumerate(stats):
            ax = axes[r * per + c // cols, c % cols]
            sim = d.value.sel(source="simulation", statistic=stat).values
            lo = d.ci_low.sel(statistic=stat).values
            hi = d.ci_high.sel(statistic=stat).values
            ok = ~unstable
            ax.fill_between(xs[ok], lo[ok], hi[ok], color="black", alpha=0.2, lw=0,
                            label="simulation 95% CI")
            ax.errorbar(xs[ok], sim[ok], yerr=[sim[ok] - lo[ok], hi[ok] - sim[ok]], fmt="o-",
                        color="black", lw=1.8, ms=4, capsize=3, label="simulation")
            for i, src in enumerate(ds.source.values[1:]):
                v = d.value.sel(source=src, statistic=stat).values
                ax.plot(xs, np.where(np.isfinite(v), v, np.nan), "--", lw=1.2,
                        color=COLORS[i % len(COLORS)], label=src)
            for j, xv in enumerate(xs[unstable]):
                ax.axvline(xv, color="red", lw=6, alpha=0.25,
                           label=_unstable_label(ds) if j == 0 else None)
            label, unit = names[str(stat)]
            if unit == "s":
                _scale(ax, np.concatenate([lo[ok], hi[ok]]))
            ax.set_title(f"{arch}: {label}", fontsize=10)
            ax.set_xlabel(_label(x))
            ax.set_ylabel(f"{label} ({unit})")
            ax.grid(True, which="both", alpha=0.3)
    handles, labels = _legend_entries(axes)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=9,
               bbox_to_anchor=(0.5, -0.04))
    what = "TTFT, TPOT and E2E" if _batched(ds) else "TTFT"
    fig.suptitle(f"{what}, simulation vs closed forms{' (' + title + ')' if title else ''}")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return _save(fig, path)


def _legend_entries(axes) -> tuple[list, list[str]]:
    """Every labelled artist of every axis, once (the unstable band may be drawn on one
    architecture's row only)."""
    seen: dict[str, object] = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    return list(seen.values()), list(seen)


def _stack(ds: xr.Dataset) -> xr.Dataset:
    dims = swept_dims(ds)
    if not dims:
        return ds.expand_dims(point=[0])
    return ds.stack(point=dims)


def _point_labels(ds: xr.Dataset) -> list[str]:
    dims = swept_dims(ds)
    if not dims:
        return ["default"]
    st = ds.stack(point=dims)
    labels = []
    for idx in st.point.values:
        idx = idx if isinstance(idx, tuple) else (idx,)
        labels.append(", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in idx))
    return labels


def fig_rel_error(ds: xr.Dataset, path: Path) -> Path:
    """Heatmaps of each method's relative error per statistic and point (stable points),
    one row per architecture; the verdict's initial in each cell."""
    st = _stack(ds)
    labels = _point_labels(ds)
    methods = list(ds.source.values[1:])
    stats = list(ds.statistic.values)
    fig, axes = plt.subplots(2, len(stats), figsize=(3.6 * len(stats) + 2,
                                                      2.6 + 1.1 * len(methods)), squeeze=False,
                             sharey=True, layout="constrained")
    im = None
    for r, arch in enumerate(ds.architecture.values):
        for c, stat in enumerate(stats):
            ax = axes[r, c]
            err = st.rel_error.sel(architecture=arch, statistic=stat,
                                   source=methods).transpose("source", "point").values
            ver = st.verdict.sel(architecture=arch, statistic=stat,
                                 source=methods).transpose("source", "point").values
            shown = np.where(ver == 3, np.nan, err)
            im = ax.imshow(np.clip(shown * 100, -50, 50), cmap="RdBu_r", vmin=-50, vmax=50,
                           aspect="auto")
            if shown.shape[1] <= 30:
                for (i, j), v in np.ndenumerate(ver):
                    ax.text(j, i, VERDICT_NAMES[int(v)][0], ha="center", va="center",
                            fontsize=7)
            if c == 0:  # shared y axis: the labels of the first column serve the row
                ax.set_yticks(range(len(methods)), methods, fontsize=8)
            step = max(1, len(labels) // 12)
            ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=60,
                          fontsize=7, ha="right")
            ax.set_title(f"{arch}: {STAT_LABELS.get(stat, stat)} TTFT", fontsize=10)
            ax.set_xlabel(", ".join(_label(d) for d in swept_dims(ds)) or "point", fontsize=8)
    cbar = fig.colorbar(im, ax=axes, shrink=0.6)
    cbar.set_label("relative error vs simulation (%)")
    fig.suptitle("Where each closed form agrees (a), is close (c), diverges (d); "
                 "u = unstable (offered load >= 1)", fontsize=11)
    return _save(fig, path)


def fig_architectures(ds: xr.Dataset, x: str, title: str, path: Path) -> Path:
    """Monolithic (batched: colocated) vs disaggregated on the same axes: simulated mean
    and P99 TTFT (batched: also mean TPOT and SLO attainment) with CI bands, and the
    default closed form dashed."""
    method = ds.attrs.get("default_method", str(ds.source.values[-1]))
    names = stat_labels(ds)
    shown = [s for s in ("mean_ttft_s", "p99_ttft_s", "mean_tpot_s", "slo_attainment")
             if s in names]
    rows = (len(shown) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(11, 4.2 * rows), squeeze=False)
    xs = ds[x].values
    for ax, stat in zip(axes.ravel(), shown, strict=True):
        for i, arch in enumerate(ds.architecture.values):
            d = ds.sel(architecture=arch)
            col = COLORS[i]
            ok = d.stable.values == 1
            ax.fill_between(xs[ok], d.ci_low.sel(statistic=stat).values[ok],
                            d.ci_high.sel(statistic=stat).values[ok], color=col, alpha=0.25,
                            lw=0)
            ax.plot(xs[ok], d.value.sel(source="simulation", statistic=stat).values[ok], "o-",
                    color=col, ms=4, label=f"{arch} simulation (95% CI band)")
            if method in ds.source.values:
                v = d.value.sel(source=method, statistic=stat).values
                ax.plot(xs, np.where(np.isfinite(v), v, np.nan), "--", color=col,
                        label=f"{arch} {method}")
            for j, xv in enumerate(xs[~ok]):
                ax.axvline(xv, color=col, lw=6, alpha=0.2,
                           label=f"{arch} {_unstable_label(ds)}" if j == 0 else None)
        label, unit = names[stat]
        if unit == "s":
            _scale(ax, ds.ci_high.sel(statistic=stat).values[ds.stable.values == 1])
        ax.set_xlabel(_label(x))
        ax.set_ylabel(f"{label} ({unit})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{_arch_title(ds)}{' (' + title + ')' if title else ''}")
    fig.tight_layout()
    return _save(fig, path)


def _arch_title(ds: xr.Dataset) -> str:
    return "Colocated vs disaggregated" if _batched(ds) else "Monolithic vs disaggregated"


def fig_distributions(ds: xr.Dataset, path: Path) -> Path:
    """TTFT CDFs at up to three points (lightest, middle, heaviest stable load)."""
    st = _stack(ds)
    labels = _point_labels(ds)
    load = st.offered_load.max("architecture").values
    stable = np.flatnonzero((st.stable == 1).all("architecture").values)
    order = stable[np.argsort(load[stable])] if stable.size else np.arange(len(labels))
    picks = sorted({int(order[0]), int(order[len(order) // 2]), int(order[-1])})
    fig, axes = plt.subplots(1, len(picks), figsize=(5 * len(picks), 4), squeeze=False)
    for ax, p in zip(axes[0], picks, strict=True):
        d = st.isel(point=p)
        for i, arch in enumerate(ds.architecture.values):
            for k, kind in enumerate(ds.kind.values):
                q = d.ttft_quantile.sel(architecture=arch, kind=kind).values
                ax.plot(q, ds.prob.values, "-" if k == 0 else "--", color=COLORS[i],
                        label=f"{arch}, {kind}")
        ax.set_xscale("log")
        ax.set_xlabel("TTFT (s)")
        ax.set_ylabel("P(TTFT <= t)")
        where = ", ".join(_label(d).split(" (")[0] for d in swept_dims(ds)) or "point"
        ax.set_title(f"{where} {labels[p]} (max offered load {load[p]:.2f})", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("TTFT distributions: simulation (solid) vs closed form (dashed)")
    fig.tight_layout()
    return _save(fig, path)


def agreement_table(ds: xr.Dataset) -> list[dict]:
    """Per method, architecture and load region: counts of agree / close / diverge over
    all statistics and stable points (unstable points counted apart)."""
    st = _stack(ds)
    rows = []
    for method in ds.source.values[1:]:
        for arch in ds.architecture.values:
            load = st.offered_load.sel(architecture=arch).values
            ok = st.stable.sel(architecture=arch).values == 1
            ver = st.verdict.sel(source=method, architecture=arch).transpose(
                "point", "statistic").values
            for name, lo, hi in REGIONS:
                sel = ver[ok & (load >= lo) & (load < hi)]
                if sel.size:
                    rows.append({"method": str(method), "architecture": str(arch),
                                 "region": name,
                                 **{v: int(np.sum(sel == k)) for k, v in
                                    ((0, "agree"), (1, "close"), (2, "diverge"))}})
            n_unst = int(np.sum(~ok))
            if n_unst:
                rows.append({"method": str(method), "architecture": str(arch),
                             "region": "rho >= 1 (unstable)" if not _batched(ds) else
                             "unstable (simulated)", "agree": 0, "close": 0,
                             "diverge": 0, "unstable points": n_unst})
            beyond = int(np.sum(ok & (load >= 1.0)))
            if beyond:  # the simulation stable where the closed form's limit says not
                sel = ver[ok & (load >= 1.0)]
                rows.append({"method": str(method), "architecture": str(arch),
                             "region": "rho >= 1 by the closed form, stable simulated",
                             **{v: int(np.sum(sel == k)) for k, v in
                                ((0, "agree"), (1, "close"), (2, "diverge"))}})
    return rows


def markdown_table(rows: list[dict]) -> str:
    """A Markdown table of ``rows`` (columns: every key, in first-seen order)."""
    if not rows:
        return "_no rows_\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    for r in rows:
        out += "| " + " | ".join(str(r.get(c, "")) for c in cols) + " |\n"
    return out


def _point_table(ds: xr.Dataset) -> list[dict]:
    """Every point and statistic: simulation with CI and each method's relative error."""
    st = _stack(ds)
    labels = _point_labels(ds)
    names = stat_labels(ds)
    rows = []
    for p, label in enumerate(labels):
        d = st.isel(point=p)
        for arch in ds.architecture.values:
            a = d.sel(architecture=arch)
            for stat in ds.statistic.values:
                name, unit = names[str(stat)]
                sim = float(a.value.sel(source="simulation", statistic=stat))
                lo = float(a.ci_low.sel(statistic=stat))
                hi = float(a.ci_high.sel(statistic=stat))
                row = {"point": label, "arch": str(arch), "statistic": name,
                       "offered load (1)": f"{float(a.offered_load):.2f}",
                       "simulation (95% CI)": f"{sim:.4g} [{lo:.4g}, {hi:.4g}] {unit}"}
                for src in ds.source.values[1:]:
                    e = float(a.rel_error.sel(source=src, statistic=stat))
                    v = VERDICT_NAMES[int(a.verdict.sel(source=src, statistic=stat))]
                    row[f"{src}: error (1), verdict"] = v if v in ("unstable", "missing") \
                        else "n/a" if not np.isfinite(e) else f"{e:+.1%} {v}"
                rows.append(row)
    return rows


def _formula_png(tex: str) -> bytes | None:
    """A formula rendered by matplotlib's mathtext (no LaTeX install, no network)."""
    try:
        fig = plt.figure(figsize=(0.01, 0.01))
        fig.text(0, 0, f"${tex}$", fontsize=15)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", pad_inches=0.08)
        plt.close(fig)
        return buf.getvalue()
    except (ValueError, RuntimeError):
        plt.close("all")
        return None


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:+.1%}"


def _signed_worst(err: xr.DataArray) -> float:
    """The value of largest magnitude (sign kept), NaN when there is none."""
    v = err.values.ravel()
    v = v[np.isfinite(v)]
    return float(v[np.argmax(np.abs(v))]) if v.size else float("nan")


def _ranges(labels: list[str]) -> str:
    return ", ".join(labels) if len(labels) <= 4 else f"{labels[0]} ... {labels[-1]}"


def headline(ds: xr.Dataset) -> list[str]:
    """The report's conclusion, a sentence a finding: which closed form to trust (its
    worst signed error per statistic over the stable points, and below load 0.8), which
    fails worst, and which architecture has the lower simulated mean TTFT where, with the
    simulation's confidence."""
    st = _stack(ds)
    labels = _point_labels(ds)
    methods = [str(m) for m in ds.source.values[1:]]
    stats = [str(s) for s in ds.statistic.values]
    names = stat_labels(ds)
    load = st.offered_load
    stable = st.stable == 1
    n_ok = int(stable.sum())
    out = []
    if methods and n_ok:
        worst = {m: {s: _signed_worst(st.rel_error.sel(source=m, statistic=s).where(stable))
                     for s in stats} for m in methods}
        light = {m: {s: _signed_worst(st.rel_error.sel(source=m, statistic=s).where(
            stable & (load < 0.8))) for s in stats} for m in methods}
        score = {m: max((abs(v) for v in worst[m].values() if np.isfinite(v)),
                        default=np.inf) for m in methods}
        best, bad = min(score, key=score.get), max(score, key=score.get)

        def per_stat(w: dict[str, float]) -> str:
            return ", ".join(f"{names[s][0]} {_pct(w[s])}" for s in stats
                             if np.isfinite(w[s]))

        if len(methods) == 1:
            out.append(f"Closed form ({best}): its worst error against the simulation over "
                       f"the {n_ok} stable (point, architecture) pairs: "
                       f"{per_stat(worst[best])}; below offered load 0.8: "
                       f"{per_stat(light[best])}.")
        else:
            out.append(f"Closed forms: trust {best} most. Its worst error against the "
                       f"simulation over the {n_ok} stable (point, architecture) pairs: "
                       f"{per_stat(worst[best])}; below offered load 0.8: "
                       f"{per_stat(light[best])}.")
        if _batched(ds):
            out.append(_trusted_loads(ds, st, best))
        default = ds.attrs.get("default_method")
        if default in methods and default != best:
            out.append(f"The default method, {default}: {per_stat(worst[default])}.")
        if bad != best:
            s_bad = max(stats, key=lambda s: abs(worst[bad][s]) if np.isfinite(
                worst[bad][s]) else -1)
            out.append(f"Least trustworthy here: {bad} ({names[s_bad][0]} off "
                       f"by up to {_pct(worst[bad][s_bad])}).")
    archs = [str(a) for a in ds.architecture.values]
    if len(archs) == 2:
        compared = [("mean_ttft_s", False)]
        if _batched(ds):
            compared += [(k, k == "slo_attainment") for k in ("mean_tpot_s", "slo_attainment")
                         if k in names]
        out += [s for stat, higher in compared
                if (s := _architecture_wins(ds, st, labels, stat, higher))]
        unstable = _unstable_points(ds, st, labels)
        if unstable:
            out.append(f"{_unstable_label(ds).capitalize()}: " + "; ".join(unstable) + ".")
    return out


def _trusted_loads(ds: xr.Dataset, st: xr.Dataset, method: str,
                   within: float = 0.10) -> str:
    """Per architecture, the offered load up to which every statistic ``method`` gives is
    within ``within`` of the simulation's mean at every stable point (batched datasets:
    the load is the rate over the form's own stability limit), and the limits."""
    parts = []
    for arch in (str(a) for a in ds.architecture.values):
        a = st.sel(architecture=arch)
        ok = (a.stable == 1).values
        load = a.offered_load.values
        err = np.abs(a.rel_error.sel(source=method).transpose("point", "statistic").values)
        bad = np.array([np.any(row[np.isfinite(row)] > within) for row in err])
        priced = np.isfinite(load) & np.array([np.isfinite(row).any() for row in err])
        order = np.argsort(load)
        upto = None
        for i in order:
            if not (ok[i] and priced[i]):  # unstable, or no closed form at this point
                continue
            if bad[i]:
                break
            upto = load[i]
        first_bad = [load[i] for i in order if ok[i] and priced[i] and bad[i]]
        limits = np.atleast_1d(a["stability_limit_rps"].values) if "stability_limit_rps" \
            in a else np.array([])
        limits = limits[np.isfinite(limits)]
        low, high = (limits.min(), limits.max()) if limits.size else (math.nan, math.nan)
        span = f"{low:.3g}" if f"{low:.3g}" == f"{high:.3g}" else f"{low:.3g} to {high:.3g}"
        binds = sorted({str(b) for b in np.atleast_1d(a["binding"].values) if str(b)}) \
            if "binding" in a else []
        bind = f", bound by {' or '.join(binds)}" if binds else ""
        text = (f"{arch} (closed-form limit {span} requests/s{bind}): " if limits.size
                else f"{arch}: ")
        unpriced = int(np.sum(ok & ~priced))
        if not (ok & priced).any():
            text += f"no closed form at its {unpriced} stable point{'s' * (unpriced != 1)}"
        elif upto is None:
            text += f"beyond {within:.0%} already at the lightest stable point"
        else:
            text += f"within {within:.0%} up to offered load {upto:.2f}"
            if first_bad:
                text += f", beyond it from {first_bad[0]:.2f}"
        if unpriced and (ok & priced).any():
            text += f" (no closed form at {unpriced} stable point{'s' * (unpriced > 1)})"
        parts.append(text)
    return f"Where to trust {method}: " + "; ".join(parts) + "."


def _unstable_points(ds: xr.Dataset, st: xr.Dataset, labels: list[str]) -> list[str]:
    """``"<architecture> at <point>"`` (or ``"both at ..."``) wherever one is unstable."""
    a0, a1 = (str(a) for a in ds.architecture.values)
    out = []
    for p, lab in enumerate(labels):
        ok = {a: bool(st.isel(point=p).stable.sel(architecture=a) == 1) for a in (a0, a1)}
        if not (ok[a0] or ok[a1]):
            out.append(f"both at {lab}")
        elif ok[a0] != ok[a1]:
            out.append(f"{a1 if ok[a0] else a0} at {lab}")
    return out


def _architecture_wins(ds: xr.Dataset, st: xr.Dataset, labels: list[str], stat: str,
                       higher: bool) -> str:
    """Which architecture's simulated ``stat`` is better (lower, or ``higher``) where,
    counted only where the two CIs are apart, by what ratio (an architecture stable
    where the other is not wins outright); "" where no point compares."""
    a0, a1 = (str(a) for a in ds.architecture.values)
    conf = float(ds.attrs.get("confidence", 0.95))
    wins: dict[str, list[tuple[str, float]]] = {a0: [], a1: [], "tie": []}
    for p, lab in enumerate(labels):
        d = st.isel(point=p)
        ok = {a: bool(d.stable.sel(architecture=a) == 1) for a in (a0, a1)}
        m = {a: float(d.value.sel(source="simulation", statistic=stat, architecture=a))
             for a in (a0, a1)}
        lo = {a: float(d.ci_low.sel(statistic=stat, architecture=a)) for a in (a0, a1)}
        hi = {a: float(d.ci_high.sel(statistic=stat, architecture=a)) for a in (a0, a1)}
        if not all(np.isfinite(list(m.values()))):
            continue
        if ok[a0] != ok[a1]:
            wins[a0 if ok[a0] else a1].append((lab, np.inf))
        elif not ok[a0]:
            continue
        elif hi[a0] < lo[a1] or hi[a1] < lo[a0]:
            low, high = (a0, a1) if hi[a0] < lo[a1] else (a1, a0)
            wins[high if higher else low].append((lab, m[high] / m[low]))
        else:
            wins["tie"].append((lab, 1.0))
    axis = ", ".join(_label(d) for d in swept_dims(ds)) or "the point"
    parts = []
    for a in (a0, a1):
        if wins[a]:
            finite = [r for _, r in wins[a] if np.isfinite(r)]
            lo_r, hi_r = (f"{min(finite):.3g}", f"{max(finite):.3g}") if finite else ("", "")
            by = ("the other unstable" if not finite else f"by {lo_r}x" if lo_r == hi_r
                  else f"by {lo_r}x to {hi_r}x")
            parts.append(f"{a} at {len(wins[a])} of {len(labels)} points ({by}; "
                         f"{_ranges([lab for lab, _ in wins[a]])})")
    if wins["tie"]:
        parts.append(f"neither at {len(wins['tie'])} (their {conf:.0%} CIs overlap: "
                     f"{_ranges([lab for lab, _ in wins['tie']])})")
    name = stat_labels(ds)[stat][0]
    return (f"Architectures, by simulated {name} over {axis} ({conf:.0%} CIs apart): "
            f"{'higher' if higher else 'lower'} for " + "; ".join(parts) + ".") \
        if parts else ""


def _cell(text: str) -> str:
    """A table cell, coloured by the verdict its text ends with (if any)."""
    word = text.rsplit(" ", 1)[-1]
    cls = f" class='v-{word}'" if word in VERDICT_COLOURS else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def incomplete_banner(ds: xr.Dataset) -> str:
    """The sentence a report of an incomplete sweep opens with ("" when complete)."""
    missing = json.loads(ds.attrs.get("missing_points", "[]"))
    failed = json.loads(ds.attrs.get("failed_points", "[]"))
    if not missing and not failed:
        return ""
    n = max(len(missing), len(failed))
    expected = ds.attrs.get("n_expected", "?")
    where = "; ".join(", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                                for k, v in m["coords"].items()) or f"job {m['job']}"
                      for m in missing[:8])
    return (f"INCOMPLETE: {n} of {expected} sweep points have no result"
            + (f" ({where}{'; ...' if len(missing) > 8 else ''})" if where else "")
            + "; their verdict is 'missing' and every conclusion below leaves them out.")


def build_report(ds: xr.Dataset, folder: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``folder``.

    Uses the dataset only (its values, CIs, verdicts and attrs); never runs a model.
    """
    folder = Path(folder)
    figdir = folder / "figures"
    figs: list[tuple[str, Path]] = []
    x = _x_dim(ds)
    if x is not None:
        for i, (title, sub) in enumerate(_slices(ds, x)):
            what = "TTFT, TPOT and E2E" if _batched(ds) else "TTFT"
            figs.append((f"{what} vs {_label(x)}" + (f" ({title})" if title else ""),
                         fig_statistics(sub, x, title, figdir / f"statistics_{i}.png")))
            figs.append((_arch_title(ds) + (f" ({title})" if title else ""),
                         fig_architectures(sub, x, title, figdir / f"architectures_{i}.png")))
    figs.append(("Relative error and verdict per method", fig_rel_error(ds,
                                                                        figdir / "errors.png")))
    figs.append(("TTFT distributions", fig_distributions(ds, figdir / "distributions.png")))

    summary = agreement_table(ds)
    points = _point_table(ds)
    formulas = json.loads(ds.attrs.get("formulas_latex", "{}"))
    failed = json.loads(ds.attrs.get("failed_points", "[]"))
    a = ds.attrs
    meta = (f"engine **{a.get('engine', '?')}** ({a.get('engine_note', '')}); "
            f"{a.get('replications', '?')} replications of {a.get('sim_seconds', '?')} s "
            f"(warm-up {a.get('warmup_seconds', '?')} s), seed {a.get('random_seed', '?')}; "
            f"package {a.get('package_version', '?')}.")
    rule = (f"A method **agrees** at a point when its value lies inside the simulation's "
            f"{float(a.get('confidence', 0.95)):.0%} CI widened by "
            f"{float(a.get('tolerance', 0.05)):.0%} on each side, **diverges** outside the CI "
            f"widened by {float(a.get('band', 0.15)):.0%}, and is **close** in between. ")
    if _batched(ds):
        rule += ("Points where a simulated replication's backlog grows are **unstable**; "
                 "the offered load is the arrival rate over the closed form's stability "
                 "limit, so a point the form calls unstable while the simulation is not "
                 "counts as the form's error. A statistic the closed forms do not give yet "
                 "(P90 TPOT; the colocated form's percentiles and attainment) is n/a.")
    else:
        rule += ("Points with offered load >= 1 in some pool are **unstable**: the closed "
                 "forms give infinity, the simulation drains a finite run and its numbers "
                 "grow with its length. Waits of the two disaggregated stages are combined "
                 "as independent, which understates disaggregated P99 by a few percent.")

    banner = incomplete_banner(ds)
    heads = headline(ds)
    md = [f"# {a.get('title', 'TTFT validation report')}\n"]
    if banner:
        md.append(f"> **{banner}**\n")
        md += [f"> - job {f.get('job')}: `{f.get('error')}`" for f in failed]
        md.append("")
    md += ["## Conclusion\n", *[f"- {h}" for h in heads], ""]
    md += [meta + "\n", rule + "\n"]
    md.append("## Agreement by method, architecture and load region\n")
    shown = ", ".join(label for label, _ in stat_labels(ds).values())
    md.append(f"Counts over the statistics ({shown}) at each point where the method gives "
              "one.\n")
    md.append(markdown_table(summary))
    md.append("## Figures\n")
    for title, p in figs:
        md.append(f"### {title}\n\n![{title}](figures/{p.name})\n")
    md.append("## Every point\n")
    md.append(markdown_table(points))
    md.append("## Formulas\n")
    for title, tex in formulas.values():
        md.append(f"**{title}**\n\n$$ {tex} $$\n")
    atomic_write_text(folder / "report.md", "\n".join(md))

    def img(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    h = ["<!doctype html><html><head><meta charset='utf-8'>",
         f"<title>{html.escape(a.get('title', 'TTFT validation'))}</title><style>",
         "body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em}",
         "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
         "padding:3px 6px}th{background:#eee}img{max-width:100%}"
         ".conclusion{border:2px solid #246;background:#eef4fb;padding:0.2em 1em}"
         + "".join(f".v-{name}{{background:{col}}}" for name, col in VERDICT_COLOURS.items())
         + "</style></head><body>",
         f"<h1>{html.escape(a.get('title', 'TTFT validation report'))}</h1>"]
    if banner:
        h.append("<div style='border:3px solid #c00;background:#fee;padding:0.5em 1em'>"
                 f"<p><b>{html.escape(banner)}</b></p><ul>")
        h += [f"<li>job {html.escape(str(f.get('job')))}: "
              f"<code>{html.escape(str(f.get('error')))}</code></li>" for f in failed]
        h.append("</ul></div>")
    h.append("<div class='conclusion'><h2>Conclusion</h2><ul>"
             + "".join(f"<li>{html.escape(x)}</li>" for x in heads) + "</ul></div>")
    h += [f"<p>{html.escape(meta).replace('**', '')}</p>",
          f"<p>{html.escape(rule).replace('**', '')}</p>"]

    def table(rows):
        if not rows:
            return "<p>none</p>"
        cols = list(dict.fromkeys(k for r in rows for k in r))
        t = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
        for r in rows:
            t += "<tr>" + "".join(_cell(str(r.get(c, ""))) for c in cols) + "</tr>"
        return t + "</table>"

    h.append("<h2>Agreement by method, architecture and load region</h2>" + table(summary))
    h.append("<h2>Figures</h2>")
    for title, p in figs:
        h.append(f"<h3>{html.escape(title)}</h3><img alt='{html.escape(title)}' "
                 f"src='data:image/png;base64,{img(p)}'>")
    h.append("<h2>Every point</h2>" + table(points))
    h.append("<h2>Formulas</h2>")
    for title, tex in formulas.values():
        png = _formula_png(tex)
        body = (f"<img alt='{html.escape(tex)}' src='data:image/png;base64,"
                f"{base64.b64encode(png).decode()}'>" if png else
                f"<code>{html.escape(tex)}</code>")
        h.append(f"<p><b>{html.escape(title)}</b><br>{body}</p>")
    h.append("</body></html>")
    atomic_write_text(folder / "report.html", "\n".join(h))
    return {"markdown": folder / "report.md", "html": folder / "report.html",
            "figures": figdir}
