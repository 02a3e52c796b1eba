"""Summarise mutmut runs: the score per module and the surviving mutants.

Run where ``mutmut run`` ran (the repository root, with its ``mutants/`` folder)::

    mutmut run --max-children 2          # [tool.mutmut] in pyproject.toml
    python benchmarks/mutation_summary.py > benchmarks/mutation/summary.md

or name the folders of several runs (clones at the commits they ran), oldest first, the
last at the commit summarised and configured as the repository is (it lists every mutant
of that commit); an earlier run lends its result to a mutant only where the mutant's
function has the same source text there as in the last (a change renumbers a function's
mutants, and tests grow, never shrink): so a new run need only check the functions changed
since (``mutmut run "analytic.ttft.x_estimate*"``)::

    python benchmarks/mutation_summary.py /tmp/run1 /tmp/run2 > benchmarks/mutation/summary.md

An earlier complete run whose folder is gone may be named ``COMMIT:FILE`` by the list of
its survivors (``FILE``) and the commit it ran: its other mutants count as "killed or
timeout" (the list does not tell them apart; the lower bound below counts them as kills,
so it is a lower bound only for the runs whose folders are named), again only in
functions whose source at ``COMMIT`` is the last run's.

Writes ``benchmarks/mutation/survivors.txt`` (one surviving mutant a line; see one with
``mutmut show NAME``) and prints a Markdown table. Score = (killed + timeout) / (killed +
timeout + survived + no tests), mutmut's own definition; mutants not yet checked (an
interrupted run, or a function changed since its last run) are counted apart, not as killed.
A timeout is not always a kill: a mutant whose tests merely run longer than mutmut's
estimate (a machine busy with other work, caches emptied) times out too, so the last
column counts timeouts as survivors, the score's lower bound.
"""

from __future__ import annotations

import ast
import re
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


_MANGLED = re.compile(
    r"^(?P<module>.+?)\.x(?:_(?P<function>.+)|\u01c1(?P<cls>.+)\u01c1(?P<method>.+))$")


def _in_folder(folder: str | None):
    """A reader of the files in ``folder`` (the current one if None): path -> text."""
    root = Path(folder) if folder else Path.cwd()
    return lambda path: (root / path).read_text() if (root / path).exists() else ""


def _at_commit(commit: str):
    """A reader of this repository's files at ``commit``: path -> text ("" if absent)."""
    def read(path: str) -> str:
        shown = subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True,
                               text=True, cwd=OUT.parent.parent)
        return shown.stdout if shown.returncode == 0 else ""
    return read


def _sources(read, functions: set[str]) -> dict[str, str]:
    """``{function: source text}`` of files read by ``read`` (path -> text), decorators
    and comments included (a ``pragma: no mutate`` added counts as a change), for
    mutmut's mangled names: ``pkg.mod.x_func`` and ``pkg.mod.x\u01c1Class\u01c1method``."""
    parsed: dict[str, tuple[list[str], dict[str, ast.AST]]] = {}
    out = {}
    for function in functions:
        match = _MANGLED.match(function)
        if match is None:
            continue
        module = match["module"]
        if module not in parsed:
            text = read(module.replace(".", "/") + ".py")
            nodes: dict[str, ast.AST] = {}
            for node in ast.parse(text).body:
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    nodes[node.name] = node
                elif isinstance(node, ast.ClassDef):
                    nodes.update({f"{node.name}.{sub.name}": sub for sub in node.body
                                  if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef)})
            parsed[module] = (text.splitlines(), nodes)
        lines, nodes = parsed[module]
        key = match["function"] or f"{match['cls']}.{match['method']}"
        node = nodes.get(key)
        if node is not None:
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            out[function] = "\n".join(lines[first - 1:node.end_lineno])
    return out


def merged(runs: list[tuple[dict[str, str], dict[str, str]]]) -> dict[str, str]:
    """Every mutant of the last run, with the result of the latest run that checked it
    while its function's source (``{function: text}``, the second of each pair) was the
    last run's; a mutant no such run checked stays ``not checked``."""
    last, now = runs[-1]
    out = {}
    for name, status in last.items():
        function = _function(name)
        for results, sources in reversed(runs):
            earlier = results.get(name, "not checked")
            if earlier != "not checked" and sources.get(function) == now.get(function):
                status = earlier
                break
        out[name] = status
    return out


def main(folders: list[str]) -> int:
    folders = folders or [None]
    last = _results(folders[-1])
    functions = {_function(n) for n in last}
    runs = []
    for folder in folders[:-1]:
        if folder and ":" in folder and not Path(folder).is_dir():
            # COMMIT:FILE, a complete run known by its survivors' list alone: a mutant
            # of the last run's is counted killed (or timed out) unless listed
            commit, _, listed = folder.partition(":")
            survivors = set(Path(listed).read_text().split())
            results = {n: "survived" if n in survivors else "killed or timeout"
                       for n in last}
            runs.append((results, _sources(_at_commit(commit), functions)))
        else:
            results = _results(folder)
            runs.append((results, _sources(_in_folder(folder), functions)))
    runs.append((last, _sources(_in_folder(folders[-1]), functions)))
    results = merged(runs)
    by: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for name, status in results.items():
        module = ".".join(name.split(".")[:2])
        by[module][status] += 1
        if status == "survived":
            survivors.append(name)
    OUT.mkdir(exist_ok=True)
    (OUT / "survivors.txt").write_text("\n".join(sorted(survivors)) + "\n")
    rows = ["| module | mutants | killed | timeout | killed or timeout | survived | no tests "
            "| not checked | score | score, timeouts as survivors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    total: Counter = Counter()
    for module in sorted(by) + ["all"]:
        c = total if module == "all" else by[module]
        if module != "all":
            total.update(c)
        either = c["killed or timeout"]
        tested = c["killed"] + c["timeout"] + either + c["survived"] + c["no tests"]
        score = (c["killed"] + c["timeout"] + either) / tested if tested else float("nan")
        low = (c["killed"] + either) / tested if tested else float("nan")
        rows.append(f"| {module} | {sum(c.values()):,} | {c['killed']:,} | {c['timeout']:,} | "
                    f"{either:,} | {c['survived']:,} | {c['no tests']:,} | "
                    f"{c['not checked']:,} | {score:.1%} | {low:.1%} |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
