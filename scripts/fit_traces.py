"""Write conf/workload/<trace>.yaml: the shipped traces as fitted laws.

Run from the repository root (no arguments; the traces ship in conf/traces)::

    python scripts/fit_traces.py [--check]

Each file is a Hydra config group option (``workload=azure_conv``) setting the mean rate,
a two-state MMPP fitted to the trace's index of dispersion of counts, and lognormal token
laws, with every fit's goodness in its header (``simulation.traces.fit_workload``).
``--check`` exits 1 when a committed file differs from what this script writes (the
tests run it).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulation.requests import load_trace  # noqa: E402
from simulation.traces import SHIPPED_TRACES, fit_workload  # noqa: E402


def text_of(name: str) -> str:
    f = fit_workload(load_trace(name))
    m = f["mmpp"]
    head = [
        "# @package _global_",
        f"# workload={name}: the shipped trace {name} (conf/traces/"
        f"{SHIPPED_TRACES[name]}; CC-BY-4.0, see NOTICE there) as fitted laws.",
        "# Written by scripts/fit_traces.py; do not edit by hand. Replay the trace itself",
        f"# with trace={name} (time-scaled: trace_rate_per_s=R).",
        f"# {f['requests']:,} requests, mean rate {f['rate_per_s']:.4f} req/s; inter-arrival "
        f"gaps' cv {f['gap_cv']:.3f}",
        "# (for a Gamma renewal instead: arrival.process=gamma arrival.cv=<cv>; it matches",
        "# the gaps but not the trace's correlated bursts, whose counts the MMPP follows).",
        "# Index of dispersion of counts, trace vs the fitted MMPP, by window:",
    ]
    head += [f"#   {w:6g} s: {t:8.2f} vs {p:8.2f}" for w, (t, p) in f["idc"].items()]
    for key, label in (("prompt", "prompt_tokens"), ("output", "output_tokens")):
        g = f[key]
        head.append(f"# {label}: lognormal, Kolmogorov-Smirnov distance {g['ks']:.3f}; "
                    f"P50/P90/P99 trace {g['p50']:.0f}/{g['p90']:.0f}/{g['p99']:.0f}, "
                    f"fit {g['fit_p50']:.0f}/{g['fit_p90']:.0f}/{g['fit_p99']:.0f}")
    body = [
        "arrival:",
        f"  rate_per_s: {f['rate_per_s']:.6g}",
        "  process: mmpp",
        f"  burst_ratio: {m.burst_ratio:.6g}",
        f"  burst_fraction: {m.burst_fraction:.6g}",
        f"  burst_cycle_s: {m.burst_cycle_s:.6g}",
        f"prompt_tokens: {{mode: log, mean: {f['prompt']['mu']:.6g}, "
        f"sigma: {f['prompt']['sigma']:.6g}, min_value: 1}}",
        f"output_tokens: {{mode: log, mean: {f['output']['mu']:.6g}, "
        f"sigma: {f['output']['sigma']:.6g}, min_value: 1}}",
    ]
    return "\n".join(head + body) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in SHIPPED_TRACES:
        path = ROOT / "conf" / "workload" / f"{name}.yaml"
        text = text_of(name)
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("stale (run python scripts/fit_traces.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
