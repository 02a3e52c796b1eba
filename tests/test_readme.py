"""The README's promises: its Python example runs, and CI runs its test command verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_python_example_runs(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    blocks = _blocks("python")
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "mean TTFT" in out and "disagg P99 TTFT in [" in out


def test_fragments_are_only_those_that_need_a_sweep_folder():
    """``py`` blocks are fragments that read a sweep's output; every other Python block
    runs above. Nothing else may hide in a ``py`` block."""
    for code in _blocks("py"):
        assert "<date_time>" in code, code


def test_quick_start_is_two_commands_and_ci_runs_the_test_one():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = _blocks_in(quick)
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci, f"CI does not run the README test command {commands[1]!r}"


def _blocks_in(text: str) -> list[str]:
    block = re.search(r"```bash\n(.*?)```", text, flags=re.S)
    assert block
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_docs_quick_start_gives_the_readme_commands():
    """The documentation's quick start page shows the README's two commands, exactly."""
    page = (ROOT / "docs" / "quickstart.md").read_text()
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert _blocks_in(page.split("## ", 1)[0]) == _blocks_in(quick)


def test_docs_examples_show_only_code_the_build_runs():
    """Every code block of the examples pages is one the docs build executes
    (``exec-python`` / ``exec-shell``), so none can go stale unnoticed."""
    for page in sorted((ROOT / "docs" / "examples").glob("*.md")):
        fences = re.findall(r"^```(\S*)", page.read_text(), flags=re.M)
        opening = fences[::2]  # every other fence closes a block
        assert all(f in ("{exec-python}", "{exec-shell}", "{toctree}") for f in opening), \
            (page.name, opening)


def test_readme_links_stay_inside_the_repository():
    """Every Markdown link of the README points at a file of this repository (users get
    the clone, not the team's shared folder or the network)."""
    targets = re.findall(r"\]\(([^)]+)\)", README) + re.findall(r"^\[[^\]]+\]:\s*(\S+)",
                                                                  README, flags=re.M)
    assert "http://" not in README and "https://" not in README
    for t in targets:
        assert not t.startswith(("http:", "https:", "../", "/")), t
        assert (ROOT / t.split("#")[0]).exists(), t


def test_docs_figures_open_full_size():
    """Every figure of the documentation is an ``{image}`` with a width, which Sphinx
    links to the full-size file (a Markdown ``![..](..)`` image would not open larger)."""
    for page in sorted((ROOT / "docs").rglob("*.md")):
        if "_build" in page.parts or "_generated" in page.parts:
            continue
        text = page.read_text()
        assert not re.search(r"^!\[", text, flags=re.M), page.name
        for block in re.findall(r"```\{image\}[^\n]*\n(.*?)```", text, flags=re.S):
            assert ":width:" in block, (page.name, block)
