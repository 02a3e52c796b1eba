"""Summarise a mutmut run: the score per module and the surviving mutants.

Run where ``mutmut run`` ran (the repository root, with its ``mutants/`` folder)::

    mutmut run --max-children 2          # [tool.mutmut] in pyproject.toml
    python benchmarks/mutation_summary.py > benchmarks/mutation/summary.md

or name the folders of several runs, oldest first: a function checked in a later run
(the functions changed since, re-run by name: ``mutmut run "analytic.ttft.x_estimate*"``)
takes all its mutants from that run, since a change renumbers a function's mutants::

    python benchmarks/mutation_summary.py /tmp/run1 /tmp/run2 > benchmarks/mutation/summary.md

Writes ``benchmarks/mutation/survivors.txt`` (one surviving mutant a line; see one with
``mutmut show NAME``) and prints a Markdown table. Score = (killed + timeout) / (killed +
timeout + survived + no tests), mutmut's own definition; mutants not yet checked (an
interrupted run) are counted apart, not as killed.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parent / "mutation"


def _results(folder: str | None) -> dict[str, str]:
    """``{mutant: status}`` of the run in ``folder`` (the current one if None)."""
    text = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True,
                          text=True, check=True, cwd=folder).stdout
    out = {}
    for line in text.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            out[name] = status
    return out


def _function(name: str) -> str:
    """The function a mutant belongs to: its name without ``__mutmut_<n>``."""
    return name.rpartition("__mutmut_")[0]


def merged(runs: list[dict[str, str]]) -> dict[str, str]:
    """Later runs replace every mutant of each function they checked; a function they
    did not check keeps the earlier run's mutants (or, new, is listed as not checked)."""
    out: dict[str, str] = {}
    for run in runs:
        checked = {_function(n) for n, st in run.items() if st != "not checked"}
        out = {n: st for n, st in out.items() if _function(n) not in checked}
        known = {_function(n) for n in out}
        out.update({n: st for n, st in run.items()
                    if _function(n) in checked or _function(n) not in known})
    return out


def main(folders: list[str]) -> int:
    results = merged([_results(f) for f in folders] if folders else [_results(None)])
    by: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for name, status in results.items():
        module = ".".join(name.split(".")[:2])
        by[module][status] += 1
        if status == "survived":
            survivors.append(name)
    OUT.mkdir(exist_ok=True)
    (OUT / "survivors.txt").write_text("\n".join(sorted(survivors)) + "\n")
    rows = ["| module | mutants | killed | timeout | survived | no tests | not checked | score |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    total: Counter = Counter()
    for module in sorted(by) + ["all"]:
        c = total if module == "all" else by[module]
        if module != "all":
            total.update(c)
        tested = c["killed"] + c["timeout"] + c["survived"] + c["no tests"]
        score = (c["killed"] + c["timeout"]) / tested if tested else float("nan")
        rows.append(f"| {module} | {sum(c.values()):,} | {c['killed']:,} | {c['timeout']:,} | "
                    f"{c['survived']:,} | {c['no tests']:,} | {c['not checked']:,} | "
                    f"{score:.1%} |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
