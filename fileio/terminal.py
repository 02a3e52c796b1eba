"""Results for a person at a terminal: a short table with units, and loud instability.

The apps print JSON for machines (``output=json``, or whenever stdout is not a terminal)
and this table for people (``output=table``, or a terminal). Standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

#: Rows of the short table, in order: a pattern over statistic keys and its label. A key
#: matching no pattern stays in the JSON only.
ROWS: tuple[tuple[str, str], ...] = (
    (r"n_measured", "requests measured"),
    (r"(mean|p50|p90|p99)_ttft_s", "TTFT {0}"),
    (r"(mean|p50|p90|p99)_tpot_s", "TPOT {0}"),
    (r"(mean|p99)_itl_s", "ITL {0}"),
    (r"(mean|p50|p99)_e2e_s", "E2E {0}"),
    (r"mean_(prefill|decode)_wait_s", "mean wait before {0}"),
    (r"mean_wait_(gpu|prefill|decode)_s", "mean wait, {0} pool"),
    (r"delay_probability_(gpu|prefill|decode)", "P(wait > 0), {0} pool"),
    (r"prob_wait_(prefill|decode)", "P(wait > 0) before {0}"),
    (r"slo_attainment(_ttft|_tpot|)", "SLO attainment{0}"),
    (r"throughput_rps", "throughput"),
    (r"throughput_tokens_per_s", "output tokens"),
    (r"offered_load_(gpu|prefill|decode)", "offered load, {0} pool"),
    (r"utilisation_(gpu|prefill|decode|colocated)", "utilisation, {0} pool"),
    (r"mean_batch_(prefill|decode|colocated)", "mean batch, {0} pool"),
    (r"mean_batch", "mean batch"),
    (r"mean_decode_batch", "mean batch, decode pool"),
    (r"kv_occupancy_(prefill|decode|colocated)", "KV occupancy, {0} pool"),
    (r"kv_in_use_fraction", "KV in use"),
    (r"stability_limit_rps", "stability limit"),
    (r"binding", "limit set by"),
    (r"stable", "stable"),
)
_LABELS = {"mean": "mean", "p50": "P50", "p90": "P90", "p99": "P99", "_ttft": " (TTFT)",
           "_tpot": " (TPOT)", "": " (both)"}


def value_text(key: str, value: object) -> str:
    """``value`` with the unit its key names (``_s`` seconds, ``_rps`` req/s, shares as
    percentages)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or key == "stable":
        return "yes" if value else "NO"
    if isinstance(value, str):
        return value
    x = float(value)  # type: ignore[arg-type]
    if math.isinf(x):
        return "inf (unstable)"
    if math.isnan(x):
        return "n/a"
    if key.endswith("_rps"):
        return f"{x:.4g} req/s"
    if key.endswith("_per_s"):
        return f"{x:.4g} tokens/s" if "tokens" in key else f"{x:.4g} /s"
    if key.endswith("_s"):
        return f"{x * 1e3:.4g} ms" if abs(x) < 1.0 else f"{x:.4g} s"
    if key.startswith(("utilisation", "offered_load", "prob_", "delay_probability",
                       "slo_attainment", "kv_")):
        return f"{x:.1%}"
    if key.startswith("n_"):
        return f"{x:,.0f}"
    return f"{x:.4g}"


def _rows(columns: Mapping[str, Mapping[str, object]]) -> list[tuple[str, str]]:
    keys = [k for col in columns.values() for k in col]
    seen, out = set(), []
    for pattern, label in ROWS:
        rx = re.compile(rf"^{pattern}$")
        for k in keys:
            m = rx.match(k)
            if m and k not in seen:
                seen.add(k)
                parts = [_LABELS.get(g, g) for g in m.groups()]
                out.append((k, label.format(*parts)))
    return out


def format_table(columns: Mapping[str, Mapping[str, object]], title: str,
                 notes: list[str] | tuple[str, ...] = ()) -> str:
    """A table of the chosen statistics (rows) by architecture (columns), with units,
    opening with ``title`` and any unstable architecture in capitals."""
    rows = _rows(columns)
    names = list(columns)
    width = max([len(lab) for _, lab in rows] + [9])
    cells = {(k, n): value_text(k, columns[n].get(k)) if k in columns[n] else "-"
             for k, _ in rows for n in names}
    colw = {n: max([len(n)] + [len(cells[(k, n)]) for k, _ in rows]) for n in names}
    lines = [title]
    lines += [f"!! {w}" for w in unstable_warnings(columns)]
    lines.append("")
    lines.append(f"{'':{width}s}  " + "  ".join(f"{n:>{colw[n]}s}" for n in names))
    for k, lab in rows:
        lines.append(f"{lab:{width}s}  " + "  ".join(f"{cells[(k, n)]:>{colw[n]}s}"
                                                     for n in names))
    lines += [f"note: {n}" for n in notes]
    lines.append("(every statistic: output=json)")
    return "\n".join(lines)


def unstable_warnings(columns: Mapping[str, Mapping[str, object]]) -> list[str]:
    """One sentence per architecture whose ``stable`` is false."""
    out = []
    for name, col in columns.items():
        if col.get("stable") is False:
            prefix = "offered_load_" if any(k.startswith("offered_load_") for k in col) \
                else "utilisation_"
            loads = [f"{k[len(prefix):]} pool at {float(v):.1%}" for k, v in col.items()
                     if k.startswith(prefix) and isinstance(v, int | float)
                     and not isinstance(v, bool) and float(v) >= 0.999]
            out.append(f"UNSTABLE: {name}: its queue grows without bound"
                       + (f" ({', '.join(loads)} load)" if loads else "")
                       + "; its numbers describe a finite run, not a steady state")
    return out
