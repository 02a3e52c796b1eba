"""The batched closed forms against the committed simulation of their accuracy grid
(``scripts/make_batched_accuracy_reference.py``; the grid is
:mod:`validate.batched_accuracy`'s): issue 11's criteria, and the regions where a form
misses them named, so that neither a better nor a worse form goes unnoticed."""

import functools
import json
import math
from pathlib import Path

import pytest

from validate.batched_accuracy import CASES, Case, evaluate, knees, summary_markdown

REFERENCE = Path(__file__).parent / "data" / "batched_accuracy_reference.json"
LLAMA = "roofline/llama-3.1-8b_a100-80gb_tp1"
#: Points below 0.8 of the limit where mean TTFT misses by more than 10 %: none since the
#: prefill-priority form rides the chain of steps (its moment form missed by -14.8 and
#: -20.9 % on Llama with wide prompts at 0.6 and 0.7).
TTFT_MISSES: set[tuple[str, float]] = set()
#: Cases whose predicted limit is not within 5 % of the simulated knee: prefill-priority
#: on OPT-13B with narrow prompts (the simulation is unstable at 0.95 of it already).
KNEE_MISSES = {"distserve/opt-13b_tp1|prefill_priority|0.3"}


@functools.cache
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@functools.cache
def rows() -> tuple[dict, ...]:
    return tuple(evaluate(reference()))


def test_the_reference_covers_the_grid_and_is_current():
    """Every case of the grid, simulated at the limit today's form predicts (a changed
    form moves its limit: run the script again)."""
    stored = {(c["profile"], c["architecture"], c["sigma"]): c for c in reference()["cases"]}
    assert set(stored) == {(c.profile, c.architecture, c.sigma) for c in CASES}
    for case in CASES:
        limit = stored[(case.profile, case.architecture, case.sigma)]["limit_rps"]
        assert case.limit() == pytest.approx(limit, rel=1e-9), (
            f"{case.key}: the form's limit moved; python "
            "scripts/make_batched_accuracy_reference.py")


def test_mean_ttft_within_10_percent_at_90_percent_of_points_below_08():
    """Issue 11: mean TTFT within 10 % at >= 90 % of the points below 0.8 of the limit
    (measured: all 72, the worst -5.8 %), and the misses are the documented ones."""
    low = [r for r in rows() if r["load"] < 0.8]
    misses = {(r["case"], r["load"]) for r in low if not abs(r["err_ttft"]) <= 0.10}
    assert len(low) == 72
    assert 1 - len(misses) / len(low) >= 0.90
    assert misses == TTFT_MISSES


def test_mean_tpot_within_10_percent_below_08():
    """Issue 11: mean TPOT within 10 %: at every point below 0.8 of the limit (the worst,
    -6.0 %, prefill-priority on Llama with wide prompts)."""
    worst = max((r for r in rows() if r["load"] < 0.8), key=lambda r: abs(r["err_tpot"]))
    assert abs(worst["err_tpot"]) <= 0.10, worst


def test_predicted_limits_within_5_percent_of_the_simulated_knee():
    """Issue 11: the predicted limit within 5 % of the simulated knee (stable at 0.95 of
    it, unstable at 1.05; 3 x 16,000 s each): 17 of 18 cases."""
    missed = {k["case"] for k in knees(reference()) if not k["holds"]}
    assert missed == KNEE_MISSES


def test_most_means_agree_within_the_interval_widened_5_percent():
    """The harness's ``agree`` verdict (inside the simulation's 95 % interval widened by
    5 % of its mean), below 0.8 of the limit: every TTFT and TPOT of the 72 points."""
    low = [r for r in rows() if r["load"] < 0.8]
    assert all(r["agree_ttft"] and r["agree_tpot"] for r in low)


def test_the_summary_table_counts_every_case():
    text = summary_markdown(reference())
    assert text.count("\n") == 1 + 6  # header, rule, 2 profiles x 3 architectures
    assert text.count("100% of 12") == 6  # every case's TTFT below 0.8


def test_a_case_prices_the_same_cluster_it_simulates():
    """The form and the simulation of a case see one cluster and one pair of laws."""
    case = Case(LLAMA, "chunked", 0.7)
    prompt, _ = case.laws()
    assert prompt.max_value == 8192 and case.cluster().instance.max_num_batched_tokens == 2048
    assert math.isfinite(case.closed_form(0.5 * case.limit())[0])
