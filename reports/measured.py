"""The report of measured runs replayed through the batched model (a dataset of
:func:`validate.measured.to_dataset`): a headline, the table, CDFs and per-request scatter."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import xarray as xr

from fileio import atomic_write_text

from .build import _save, markdown_table, plt

LABELS = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "E2E"}


def headline(ds: xr.Dataset) -> list[str]:
    """One sentence a run: its errors at the mean and the worst of P50/P90/P99."""
    out = []
    for run in ds.run.values:
        d = ds.rel_error.sel(run=run)
        parts = []
        for m in ds.metric.values:
            e = d.sel(metric=m)
            worst = e.sel(statistic=["p50", "p90", "p99"])
            k = int(np.argmax(np.abs(worst.values)))
            parts.append(f"{LABELS[str(m)]} mean {float(e.sel(statistic='mean')):+.1%} "
                         f"(worst percentile {str(worst.statistic.values[k]).upper()} "
                         f"{float(worst.values[k]):+.1%})")
        out.append(f"{run}: simulated vs measured, " + "; ".join(parts) + ".")
    return out


def rows(ds: xr.Dataset) -> list[dict]:
    out = []
    for run in ds.run.values:
        for m in ds.metric.values:
            for s in ds.statistic.values:
                x = ds.sel(run=run, metric=m, statistic=s)
                out.append({"run": str(run), "metric": LABELS[str(m)],
                            "statistic": str(s).upper(),
                            "measured (ms)": f"{1e3 * float(x.measured):.1f}",
                            "simulated (ms)": f"{1e3 * float(x.simulated):.1f}",
                            "error": f"{float(x.rel_error):+.1%}"})
    return out


def fig_cdfs(ds: xr.Dataset, run: str, path: Path) -> Path:
    """Measured and simulated CDF of each metric."""
    fig, axes = plt.subplots(1, len(ds.metric), figsize=(4.2 * len(ds.metric), 3.4))
    for ax, m in zip(np.atleast_1d(axes), ds.metric.values, strict=True):
        for src, style in (("measured", "-"), ("simulated", "--")):
            x = ds[f"{src}_{m}"].sel(run=run).values
            x = np.sort(x[np.isfinite(x)]) * 1e3
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), style, label=src)
        ax.set_xlabel(f"{LABELS[str(m)]} (ms)")
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"{run}: CDFs, measured vs simulated")
    fig.tight_layout()
    return _save(fig, path)


def fig_scatter(ds: xr.Dataset, run: str, path: Path) -> Path:
    """Per request, simulated against measured, with the diagonal."""
    fig, axes = plt.subplots(1, len(ds.metric), figsize=(4.2 * len(ds.metric), 3.8))
    for ax, m in zip(np.atleast_1d(axes), ds.metric.values, strict=True):
        x = ds[f"measured_{m}"].sel(run=run).values * 1e3
        y = ds[f"simulated_{m}"].sel(run=run).values * 1e3
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=6, alpha=0.6)
        lo, hi = float(min(x[ok].min(), y[ok].min())), float(max(x[ok].max(), y[ok].max()))
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="simulated = measured")
        ax.set_xlabel(f"measured {LABELS[str(m)]} (ms)")
        ax.set_ylabel(f"simulated {LABELS[str(m)]} (ms)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    fig.suptitle(f"{run}: per request")
    fig.tight_layout()
    return _save(fig, path)


def build_measured_report(ds: xr.Dataset, folder: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` (self-contained) and ``figures/`` into
    ``folder`` from the dataset alone."""
    folder = Path(folder)
    figs = []
    for i, run in enumerate(ds.run.values):
        figs.append((f"{run}: CDFs", fig_cdfs(ds, str(run), folder / "figures" / f"cdf_{i}.png")))
        figs.append((f"{run}: per request",
                     fig_scatter(ds, str(run), folder / "figures" / f"scatter_{i}.png")))
    heads = headline(ds)
    table = rows(ds)
    rule = ("Error is simulated / measured - 1. The step profile is fitted to the GPU's "
            "kernel timings only and the engine settings are read from the run; nothing is "
            "fitted to the measured latencies.")
    md = [f"# {ds.attrs.get('title', 'Measured runs')}\n", *[f"**{h}**\n" for h in heads],
          rule + "\n", "## Statistics\n", markdown_table(table), "## How each run was replayed\n"]
    for run in ds.run.values:
        md.append(f"**{run}** ({int(ds.requests.sel(run=run))} requests, "
                  f"{int(ds.preemptions.sel(run=run))} preemptions in the replay)\n")
        md += [f"- {line}" for line in str(ds.setup.sel(run=run).values).splitlines()]
        peer = str(ds.peer.sel(run=run).values) if "peer" in ds else ""
        if peer.strip():
            md += ["", "Another simulator on the same run (as its authors reported it):", "",
                   "```", peer.rstrip(), "```"]
        md.append("")
    md.append("## Figures\n")
    md += [f"### {t}\n\n![{t}](figures/{p.name})\n" for t, p in figs]
    atomic_write_text(folder / "report.md", "\n".join(md))

    esc = html.escape
    h = ["<!doctype html><html><head><meta charset='utf-8'>",
         f"<title>{esc(ds.attrs.get('title', 'Measured runs'))}</title><style>",
         "body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em}",
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
         "text-align:right}img{max-width:100%}.head{font-size:1.1em;font-weight:bold}",
         "</style></head><body>", f"<h1>{esc(ds.attrs.get('title', 'Measured runs'))}</h1>"]
    h += [f"<p class='head'>{esc(x)}</p>" for x in heads]
    h.append(f"<p>{esc(rule)}</p><h2>Statistics</h2><table><tr>"
             + "".join(f"<th>{esc(c)}</th>" for c in table[0]) + "</tr>")
    h += ["<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in r.values()) + "</tr>"
          for r in table]
    h.append("</table><h2>How each run was replayed</h2>")
    for run in ds.run.values:
        h.append(f"<h3>{esc(str(run))}</h3><ul>" + "".join(
            f"<li>{esc(line)}</li>" for line in str(ds.setup.sel(run=run).values).splitlines())
            + "</ul>")
        peer = str(ds.peer.sel(run=run).values) if "peer" in ds else ""
        if peer.strip():
            h.append("<p>Another simulator on the same run (as its authors reported it):</p>"
                     f"<pre>{esc(peer)}</pre>")
    for t, p in figs:
        data = base64.b64encode(p.read_bytes()).decode()
        h.append(f"<h3>{esc(t)}</h3><img alt='{esc(t)}' src='data:image/png;base64,{data}'>")
    h.append("</body></html>")
    atomic_write_text(folder / "report.html", "\n".join(h))
    return {"markdown": folder / "report.md", "html": folder / "report.html"}
