"""Sphinx extension of the TTFT toolkit's documentation.

Three things, so that nothing on the pages is pasted by hand:

``mathtext`` math renderer
    Formulas are drawn at build time by matplotlib's mathtext (the engine the reports
    use) as inline SVG: the pages need no JavaScript and no network to show them.

``exec-python`` and ``exec-shell`` directives
    The code of a block is run during the build (Python blocks of one page share a
    namespace; the working folder is the project root) and its output is shown under it.
    A block that raises, or a command whose exit status is not the one the block states
    (``:returncode:``, 0 unless given), fails the build. Figures a Python block leaves
    open are saved and shown.

The validation sweep
    On ``builder-inited`` the quick start's main job, ``python -m validate +sweep=rates``,
    runs into ``docs/_generated/sweep`` (about 45 s on 2 cores), unless that folder
    already holds a ``dataset.nc`` or ``TTFT_DOCS_SWEEP`` names another sweep folder.
    Its report figures and tables (made by :mod:`reports`) are written to
    ``docs/_generated`` for the pages to include. Delete ``docs/_generated`` to refresh.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from docutils import nodes  # noqa: E402
from docutils.parsers.rst import directives  # noqa: E402
from matplotlib import mathtext  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from sphinx.application import Sphinx  # noqa: E402
from sphinx.util import logging  # noqa: E402
from sphinx.util.docutils import SphinxDirective  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "docs" / "_generated"
logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- math
@functools.cache
def render_tex(tex: str, size_pt: float) -> str:
    """A formula as a base64 SVG (mathtext subset of LaTeX; raises ValueError if the
    formula uses something mathtext lacks)."""
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "ttft-docs", "svg.fonttype": "path"}):
        mathtext.math_to_image(f"${tex}$", buf, prop=FontProperties(size=size_pt),
                               format="svg")
    return base64.b64encode(buf.getvalue()).decode()


#: LaTeX spellings mathtext lacks, and the ones it has.
_SPELLINGS = [(re.compile(r"\\le(?![a-zA-Z])"), r"\\leq"),
              (re.compile(r"\\ge(?![a-zA-Z])"), r"\\geq"),
              (re.compile(r"\\tfrac12(?![0-9])"), r"\\frac{1}{2}"),
              (re.compile(r"\\tfrac(?![a-zA-Z])"), r"\\frac"),
              (re.compile(r"\\operatorname\{([^}]*)\}"), r"\\mathrm{\1}")]


def to_mathtext(tex: str) -> str:
    """One line of LaTeX in the spellings matplotlib's mathtext knows."""
    tex = " ".join(tex.split())
    for pattern, repl in _SPELLINGS:
        tex = pattern.sub(repl, tex)
    return tex


def _img(self, tex: str, size_pt: float, cls: str) -> str:
    tex = to_mathtext(tex)
    try:
        data = render_tex(tex, size_pt)
    except ValueError as err:
        why = [line for line in str(err).splitlines() if line.strip()]
        logger.warning(f"mathtext cannot draw {tex!r}: {why[-1] if why else err}",
                       location=None)
        return f"<code>{self.encode(tex)}</code>"
    return (f'<img class="{cls}" alt="{self.encode(tex)}" '
            f'src="data:image/svg+xml;base64,{data}"/>')


def visit_math(self, node: nodes.math) -> None:
    self.body.append(_img(self, node.astext(), 11.5, "math-inline"))
    raise nodes.SkipNode


def visit_displaymath(self, node: nodes.math_block) -> None:
    self.body.append(self.starttag(node, "div", CLASS="math-display"))
    for part in (p for p in node.astext().split("\n\n") if p.strip()):
        self.body.append(f"<div>{_img(self, part, 14.0, 'math-block')}</div>")
    self.body.append("</div>\n")
    raise nodes.SkipNode


# ----------------------------------------------------------------------- execution
def _namespace(env, docname: str) -> dict:
    spaces = env.temp_data.setdefault("ttft_exec_namespaces", {})
    return spaces.setdefault(docname, {"__name__": "__docs__"})


def _output_block(text: str, caption: str) -> list[nodes.Node]:
    out = nodes.literal_block(text, text, language="text")
    out["classes"].append("exec-output")
    para = nodes.paragraph()
    para += nodes.emphasis(text=caption)
    para["classes"].append("exec-caption")
    return [para, out]


class ExecPython(SphinxDirective):
    """Show a Python block and what it prints, run during the build."""

    has_content = True
    option_spec = {"hide-output": directives.flag}

    def run(self) -> list[nodes.Node]:
        code = "\n".join(self.content)
        env = self.env
        ns = _namespace(env, env.docname)
        out = io.StringIO()
        cwd = os.getcwd()
        plt.close("all")
        try:
            os.chdir(ROOT)
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"<{env.docname}:{self.lineno}>", "exec"), ns)  # noqa: S102
        except Exception:  # the build must fail, with the traceback
            raise self.error(f"exec-python block failed:\n{traceback.format_exc()}") from None
        finally:
            os.chdir(cwd)
        result: list[nodes.Node] = [nodes.literal_block(code, code, language="python")]
        text = out.getvalue().rstrip()
        if text and "hide-output" not in self.options:
            result += _output_block(text, "Output (run when these pages were built)")
        for num in plt.get_fignums():
            fig = plt.figure(num)
            digest = hashlib.sha1(f"{env.docname}:{self.lineno}:{num}".encode()).hexdigest()
            path = GENERATED / "exec" / f"{digest[:12]}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=110, bbox_inches="tight")
            rel = os.path.relpath(path, Path(env.srcdir) / Path(env.docname).parent)
            image = nodes.image(uri=rel.replace(os.sep, "/"), alt="figure made by the code above")
            image["candidates"] = {"*": str(path.relative_to(env.srcdir)).replace(os.sep, "/")}
            result.append(image)
        plt.close("all")
        return result


def _commands(lines: list[str]) -> list[str]:
    """Commands one per line; a line ending in a backslash continues on the next."""
    out: list[str] = []
    pending = ""
    for line in lines:
        if pending:
            line = pending + "\n" + line
            pending = ""
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()
        elif line.strip():
            out.append(line)
    if pending:
        out.append(pending.rstrip("\\"))
    return out


class ExecShell(SphinxDirective):
    """Show shell commands (one per line, a trailing backslash continues a line) and
    what they print, run during the build."""

    has_content = True
    option_spec = {"returncode": directives.nonnegative_int, "timeout": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        expected = self.options.get("returncode", 0)
        shown = []
        for typed in _commands(list(self.content)):
            cmd = typed.replace("\\\n", " ")
            env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
            proc = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True,
                                  timeout=self.options.get("timeout", 300), env=env)
            if proc.returncode != expected:
                raise self.error(f"exec-shell: {cmd!r} exited {proc.returncode}, the page says "
                                 f"{expected}:\n{proc.stdout}\n{proc.stderr}")
            text = (proc.stdout + proc.stderr).rstrip()
            shown.append(f"$ {typed}" + (f"\n{text}" if text else ""))
        body = "\n".join(shown)
        block = nodes.literal_block(body, body, language="console")
        return [block]


# --------------------------------------------------------------------- the sweep
def sweep_folder() -> Path:
    """The sweep the pages show: ``TTFT_DOCS_SWEEP``, or ``docs/_generated/sweep`` (run
    now unless it already holds a dataset)."""
    given = os.environ.get("TTFT_DOCS_SWEEP")
    if given:
        folder = Path(given).resolve()
        if not (folder / "dataset.nc").is_file():
            raise RuntimeError(f"TTFT_DOCS_SWEEP = {given!r}: no dataset.nc in that folder")
        return folder
    folder = GENERATED / "sweep"
    if not (folder / "dataset.nc").is_file():
        logger.info("running python -m validate +sweep=rates for the docs (about 45 s)")
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "validate", "+sweep=rates",
                        f"hydra.sweep.dir={folder}"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    return folder


def _tree(folder: Path, shown_jobs: int = 3) -> str:
    """The sweep folder as the quick start describes it (the first job folders shown)."""
    def name(p: Path) -> str:
        return p.name + ("/" if p.is_dir() else "")

    lines = [f"multirun/<date_time>/   ({sum(1 for _ in folder.rglob('*'))} files and "
             "folders in all)"]
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    jobs = sorted((p for p in entries if p.is_dir() and p.name.isdigit()),
                  key=lambda p: int(p.name))
    lines += [f"  {name(p)}" for p in entries if p.is_file()]
    for k, job in enumerate(jobs[:shown_jobs]):
        lines.append(f"  {name(job)}")
        if k == 0:
            lines += [f"    {name(q)}" for q in sorted(job.iterdir())]
    if len(jobs) > shown_jobs:
        lines.append(f"  ...   ({len(jobs)} job folders, 0 to {len(jobs) - 1})")
    for p in entries:
        if p.is_dir() and p not in jobs:
            lines.append(f"  {name(p)}")
            lines += [f"    {name(q)}" for q in sorted(p.iterdir())]
    return "\n".join(lines)


def _accuracy_rows(ds) -> list[dict]:
    """Per method and architecture: the signed relative error range of each statistic
    over the stable points with offered load <= 0.8 (where a user sizes a cluster)."""
    import numpy as np

    from reports.build import STAT_LABELS

    rows = []
    load = ds.offered_load
    for method in [str(s) for s in ds.source.values[1:]]:
        for arch in [str(a) for a in ds.architecture.values]:
            keep = (load.sel(architecture=arch) <= 0.8).values
            row = {"method": method, "architecture": arch}
            for stat in ds.statistic.values:
                err = ds.rel_error.sel(source=method, architecture=arch, statistic=stat)
                vals = np.asarray(err.values)[keep]
                vals = vals[np.isfinite(vals)]
                row[STAT_LABELS[str(stat)]] = (f"{vals.min():+.0%} .. {vals.max():+.0%}"
                                               if vals.size else "-")
            rows.append(row)
    return rows


def generate(app: Sphinx) -> None:
    """Run (or reuse) the sweep; write the figures and tables the pages include."""
    import xarray as xr

    from reports.build import agreement_table, build_report, markdown_table

    folder = sweep_folder()
    out = GENERATED
    ds = xr.load_dataset(folder / "dataset.nc")
    report = out / "report"
    build_report(ds, report)  # the project's report code: figures and tables
    figs = out / "figures"
    shutil.rmtree(figs, ignore_errors=True)
    shutil.copytree(report / "figures", figs)
    (out / "sweep_tree.txt").write_text(_tree(folder) + "\n")
    (out / "agreement.md").write_text(markdown_table(agreement_table(ds)))
    (out / "accuracy.md").write_text(markdown_table(_accuracy_rows(ds)))
    rates = ds.coords[[d for d in ds.dims if d.startswith("arrival")][0]].values
    a = ds.attrs
    facts = {
        "rates": ", ".join(f"{r:g}" for r in rates),
        "replications": a.get("replications"), "sim_seconds": a.get("sim_seconds"),
        "warmup_seconds": a.get("warmup_seconds"), "engine": a.get("engine"),
        "seed": a.get("random_seed"), "version": a.get("package_version"),
    }
    (out / "sweep_facts.json").write_text(json.dumps(facts, indent=1, default=str))
    (out / "sweep_facts.md").write_text(
        f"The sweep shown was run when these pages were built: package {facts['version']}, "
        f"engine `{facts['engine']}`, seed {facts['seed']}, {facts['replications']} "
        f"replications of {facts['sim_seconds']} s (warm-up {facts['warmup_seconds']} s) "
        f"at arrival rates {facts['rates']} req/s.\n")
    with xr.set_options(display_width=100):
        (out / "dataset_repr.txt").write_text(repr(ds) + "\n")
    generate_measured(out)
    generate_fidelity(out)
    generate_batched_accuracy(out)


def generate_batched_accuracy(out: Path) -> None:
    """The batched closed forms priced on the committed accuracy-grid simulations (about
    10 s), for batched.md (:mod:`validate.batched_accuracy`)."""
    from validate import batched_accuracy

    doc = json.loads((ROOT / "tests" / "data" / "batched_accuracy_reference.json").read_text())
    (out / "batched_accuracy.md").write_text(batched_accuracy.summary_markdown(doc) + "\n")


def generate_fidelity(out: Path) -> None:
    """Every closed form priced on the committed fidelity-grid simulations (about two
    minutes), for theory.md: conclusion first, then the tables (:mod:`validate.fidelity`);
    ``fidelity.md`` for the grid, ``fidelity_holdout.md`` for the out-of-sample grid."""
    import spec
    from validate import fidelity

    for page, stored in (("fidelity.md", "fidelity_reference.json"),
                         ("fidelity_holdout.md", "fidelity_holdout.json")):
        doc = fidelity.read_reference(ROOT / "tests" / "data" / stored)
        ds = fidelity.price_grid(doc["points"], spec.config_from_mapping(doc["base_config"]))
        (out / page).write_text(fidelity.report_body(ds))


def generate_measured(out: Path) -> None:
    """The measured run replayed (2 s) and the kernel-profile fits, for measured.md."""
    from reports.build import markdown_table
    from reports.measured import build_measured_report, headline, rows
    from simulation.calibrate import calibrate
    from validate import measured

    run = measured.read_run(measured.run_folder(measured.SHIPPED), measured.SHIPPED)
    rep = measured.replay(run)
    ds = measured.to_dataset([rep])
    folder = out / "measured"
    shutil.rmtree(folder, ignore_errors=True)
    build_measured_report(ds, folder)
    (out / "measured_headline.md").write_text("\n\n".join(f"**{h}**" for h in headline(ds))
                                              + "\n")
    (out / "measured_table.md").write_text(markdown_table(rows(ds)))
    (out / "measured_setup.md").write_text(
        "\n".join(f"- {line}" for line in rep.setup.notes) + "\n")
    s = rep.setup
    eng = run.engine
    fits = calibrate(run.folder / "profile", s.model, 1, kv_capacity_tokens=s.kv_capacity_tokens,
                     max_num_batched_tokens=int(eng["max_num_batched_tokens"]),
                     max_num_seqs=int(eng["max_num_seqs"]))
    fit_rows = [{"form": f.form, "steps": kind, "points": f"{e.points:,}",
                 "median": f"{e.median:.1%}", "P90": f"{e.p90:.1%}", "worst": f"{e.worst:.1%}",
                 "mean (signed)": f"{e.mean_signed:+.1%}"}
                for f in fits for kind, e in f.errors.items()]
    (out / "calibration.md").write_text(markdown_table(fit_rows))
    sens = []
    for ms in (0.0, 0.5, 1.0, 1.5, 2.0):
        rep_ms = measured.replay(run, step_overhead_s=ms * 1e-3)
        e = measured.to_dataset([rep_ms]).rel_error.isel(run=0)
        row = {"added a step (ms)": f"{ms:g}"}
        for m, lab in (("ttft_s", "TTFT"), ("tpot_s", "TPOT")):
            for st in ("mean", "p50", "p90"):
                row[f"{lab} {st.upper()}"] = f"{float(e.sel(metric=m, statistic=st)):+.1%}"
        sens.append(row)
    (out / "measured_overhead.md").write_text(markdown_table(sens))
    generate_traces(out)


def generate_traces(out: Path) -> None:
    """The shipped traces' fitted laws and their goodness, for measured.md."""
    from reports.build import markdown_table
    from simulation.requests import load_trace
    from simulation.traces import SHIPPED_TRACES, fit_workload

    laws, counts = [], []
    for name in SHIPPED_TRACES:
        f = fit_workload(load_trace(name))
        for key in ("prompt", "output"):
            g = f[key]
            laws.append({"trace": name, "tokens": key, "mu": f"{g['mu']:.3f}",
                         "sigma": f"{g['sigma']:.3f}", "KS distance": f"{g['ks']:.3f}",
                         "P50 trace / fit": f"{g['p50']:.0f} / {g['fit_p50']:.0f}",
                         "P90 trace / fit": f"{g['p90']:.0f} / {g['fit_p90']:.0f}",
                         "P99 trace / fit": f"{g['p99']:.0f} / {g['fit_p99']:.0f}"})
        m = f["mmpp"]
        row = {"trace": name, "rate (req/s)": f"{f['rate_per_s']:.3f}",
               "gap cv": f"{f['gap_cv']:.2f}",
               "MMPP ratio / fraction / cycle (s)":
                   f"{m.burst_ratio:.2f} / {m.burst_fraction:.3f} / {m.burst_cycle_s:.0f}"}
        row.update({f"IDC {w:g} s": f"{t:.1f} / {p:.1f}" for w, (t, p) in f["idc"].items()})
        counts.append(row)
    (out / "trace_laws.md").write_text(markdown_table(laws))
    (out / "trace_arrivals.md").write_text(markdown_table(counts))


def setup(app: Sphinx) -> dict:
    app.add_html_math_renderer("mathtext", (visit_math, None), (visit_displaymath, None))
    app.add_directive("exec-python", ExecPython)
    app.add_directive("exec-shell", ExecShell)
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
