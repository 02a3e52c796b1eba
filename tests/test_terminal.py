"""Output a person can read (issue 13, point 4): tables with units, loud instability,
each app's own --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fileio.terminal import format_table, unstable_warnings, value_text

ROOT = Path(__file__).resolve().parent.parent


def app(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", name, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(("key", "value", "text"), [
    ("mean_ttft_s", 0.07827, "78.27 ms"), ("p99_ttft_s", 12.5, "12.5 s"),
    ("throughput_rps", 4.0112, "4.011 req/s"),
    ("throughput_tokens_per_s", 817.0, "817 tokens/s"),
    ("utilisation_decode", 0.369, "36.9%"), ("slo_attainment", 0.979, "97.9%"),
    ("n_measured", 16410.0, "16,410"), ("stable", False, "NO"), ("stable", True, "yes"),
    ("mean_ttft_s", float("inf"), "inf (unstable)"), ("mean_ttft_s", None, "n/a"),
    ("binding", "decode KV memory", "decode KV memory"),
])
def test_values_carry_their_units(key, value, text):
    assert value_text(key, value) == text


def test_table_rows_labels_and_missing_cells():
    cols = {"mono": {"mean_ttft_s": 0.1, "utilisation_gpu": 0.5, "stable": True},
            "disagg": {"mean_ttft_s": 0.2, "utilisation_decode": 0.7, "stable": True,
                       "unlisted_key": 3.0}}
    lines = format_table(cols, "title").splitlines()
    assert lines[0] == "title" and lines[1] == ""
    body = "\n".join(lines)
    assert "TTFT mean" in body and "utilisation, gpu pool" in body and "unlisted" not in body
    row = next(line for line in lines if line.startswith("utilisation, decode pool"))
    assert row.split()[-2:] == ["-", "70.0%"]


def test_instability_is_announced_by_pool_and_load():
    cols = {"mono": {"stable": True, "offered_load_gpu": 0.6},
            "disagg": {"stable": False, "offered_load_prefill": 0.2,
                       "offered_load_decode": 1.108, "utilisation_decode": 1.0}}
    (w,) = unstable_warnings(cols)
    assert w.startswith("UNSTABLE: disagg: its queue grows without bound (decode pool at "
                        "110.8% load)")
    assert format_table(cols, "t").splitlines()[1] == f"!! {w}"


def test_table_on_request_json_when_piped_and_warnings_either_way():
    unstable = ["mode=both", "sim_seconds=2000", "warmup_seconds=200", "arrival.rate_per_s=6"]
    table = app("simulation", *unstable, "output=table")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("python -m simulation: serving fifo, engine fast")
    assert "!! UNSTABLE: disagg" in table.stdout and "TTFT P99" in table.stdout
    piped = app("simulation", *unstable)  # stdout is a pipe: JSON, the warning on stderr
    assert json.loads(piped.stdout)["disagg"]["stable"] is False
    assert "warning: UNSTABLE: disagg: its queue grows without bound" in piped.stderr
    est = app("analytic", "mode=both", "output=table")
    assert est.stdout.startswith("python -m analytic: serving fifo, method kimura")
    assert json.loads(app("analytic", "output=json").stdout)["estimate"]["stable"] is True
    bad = app("analytic", "output=tabel")
    assert bad.returncode == 2 and "output = 'tabel': must be one of auto, table, json" in \
        bad.stderr


def test_each_app_has_its_own_help():
    sim, est = app("simulation", "--help").stdout, app("analytic", "--help").stdout
    assert sim.startswith("python -m simulation: simulate one point")
    assert est.startswith("python -m analytic: the closed-form estimate")
    assert "method=kimura" in est and "method=" not in sim
    assert "engine=fast|simpy" in sim and "engine=fast" not in est
    for text in (sim, est):  # the data folders are not offered as config groups
        assert "profiles/distserve:" not in text and "measured/" not in text


def test_analytic_title_names_the_wait_law_and_linking_in_use():
    default = app("analytic", "mode=both", "output=table")
    assert default.stdout.startswith("python -m analytic: serving fifo, method kimura, "
                                     "residual wait, timescale linking, arrival rate 2 req/s")
    chosen = app("analytic", "mode=disagg", "output=table", "wait_law=exponential",
                 "linking=qna")
    assert chosen.stdout.startswith("python -m analytic: serving fifo, method kimura, "
                                    "exponential wait, qna linking, arrival rate 2 req/s")
