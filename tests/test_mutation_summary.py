"""The mutation score's bookkeeping across runs (benchmarks/mutation_summary.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from mutation_summary import merged  # noqa: E402


def test_a_later_run_replaces_only_the_functions_it_checked():
    first = {"m.f__mutmut_1": "survived", "m.f__mutmut_2": "killed",
             "m.g__mutmut_1": "survived", "m.g__mutmut_2": "killed"}
    # f changed (renumbered: now one mutant) and was re-run; g was not; h is new, unrun
    second = {"m.f__mutmut_1": "killed", "m.g__mutmut_1": "not checked",
              "m.g__mutmut_2": "not checked", "m.g__mutmut_3": "not checked",
              "m.h__mutmut_1": "not checked"}
    assert merged([first, second]) == {
        "m.f__mutmut_1": "killed", "m.g__mutmut_1": "survived", "m.g__mutmut_2": "killed",
        "m.h__mutmut_1": "not checked"}
    assert merged([first]) == first
