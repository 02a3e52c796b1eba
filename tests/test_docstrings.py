"""The ``Examples`` sections of the docstrings (shown in the API reference) run."""

import doctest
import importlib

import pytest

MODULES = ["spec.tokens", "analytic.capacity", "analytic.ttft", "analytic.mdc",
           "analytic.queues", "simulation.runner"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"


def test_every_module_with_examples_is_listed():
    """A module that gains an Examples section is run too (no silent skip)."""
    from pathlib import Path

    root = Path(__file__).parent.parent
    found = sorted(
        ".".join(p.relative_to(root).with_suffix("").parts)
        for pkg in ("spec", "analytic", "simulation", "validate", "reports", "conf")
        for p in (root / pkg).rglob("*.py") if ">>> " in p.read_text())
    assert found == sorted(MODULES)


def test_text_files_hold_no_control_characters():
    """A ``\\f`` or ``\\t`` written by an unescaped ``\\frac`` or ``\\tau`` breaks the
    math silently (Sphinx builds it as text): docs, README and sources hold none."""
    import re
    from pathlib import Path

    root = Path(__file__).parent.parent
    files = [*root.glob("*.md"), *(root / "docs").glob("*.md"),
             *(p for pkg in ("spec", "analytic", "simulation", "validate", "reports", "conf",
                             "fileio", "tests", "scripts", "benchmarks")
               for p in (root / pkg).rglob("*.py"))]
    bad = [f"{p.relative_to(root)}: {m.group()!r} at {m.start()}"
           for p in files for m in [re.search(r"[\x00-\x08\x0b-\x0c\x0e-\x1f]",
                                              p.read_text(encoding="utf-8"))] if m]
    assert not bad, bad
