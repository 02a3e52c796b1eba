"""Summarise a mutmut run: the score per module and the surviving mutants.

Run where ``mutmut run`` ran (the repository root, with its ``mutants/`` folder)::

    mutmut run --max-children 2          # [tool.mutmut] in pyproject.toml
    python benchmarks/mutation_summary.py > benchmarks/mutation/summary.md

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


def main() -> int:
    text = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True,
                          text=True, check=True).stdout
    by: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for line in text.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if not name:
            continue
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
    sys.exit(main())
