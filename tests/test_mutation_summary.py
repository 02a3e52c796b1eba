"""The mutation score's bookkeeping across runs (benchmarks/mutation_summary.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from mutation_summary import _in_folder, _sources, merged  # noqa: E402


def test_an_earlier_result_counts_only_where_the_function_is_unchanged():
    first = ({"m.x_f__mutmut_1": "survived", "m.x_f__mutmut_2": "killed",
              "m.x_g__mutmut_1": "survived", "m.x_g__mutmut_2": "killed",
              "m.x_k__mutmut_1": "killed"},
             {"m.x_f": "def f(): old", "m.x_g": "def g(): same", "m.x_k": "def k(): old"})
    # f changed and was re-run; g unchanged, not re-run; k changed, not re-run; h new
    second = ({"m.x_f__mutmut_1": "killed", "m.x_g__mutmut_1": "not checked",
               "m.x_g__mutmut_2": "not checked", "m.x_k__mutmut_1": "not checked",
               "m.x_h__mutmut_1": "not checked"},
              {"m.x_f": "def f(): new", "m.x_g": "def g(): same", "m.x_k": "def k(): new",
               "m.x_h": "def h(): new"})
    assert merged([first, second]) == {
        "m.x_f__mutmut_1": "killed", "m.x_g__mutmut_1": "survived",
        "m.x_g__mutmut_2": "killed", "m.x_k__mutmut_1": "not checked",
        "m.x_h__mutmut_1": "not checked"}
    assert merged([first]) == first[0]
    # a later check of an unchanged function wins over the earlier one
    third = ({"m.x_g__mutmut_1": "killed", "m.x_g__mutmut_2": "not checked"}, second[1])
    assert merged([first, second, third]) == {"m.x_g__mutmut_1": "killed",
                                             "m.x_g__mutmut_2": "killed"}


def test_sources_are_whole_functions_with_decorators_and_comments(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(
        "import functools\n\n\n@functools.cache\ndef f(x):\n    return x + 1  # note\n\n\n"
        "class C:\n    def m(self):\n        return 2\n")
    names = {"pkg.mod.x_f", "pkg.mod.x\u01c1C\u01c1m", "pkg.mod.x_gone"}
    assert _sources(_in_folder(str(tmp_path)), names) == {
        "pkg.mod.x_f": "@functools.cache\ndef f(x):\n    return x + 1  # note",
        "pkg.mod.x\u01c1C\u01c1m": "    def m(self):\n        return 2"}
