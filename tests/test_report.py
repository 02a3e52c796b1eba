"""The validation report leads with its conclusion (issue 13, point 5): checked on a
dataset built by hand, where the right sentences are known."""

from __future__ import annotations

import numpy as np
import xarray as xr

from reports.build import build_report, headline, incomplete_banner


def hand_dataset() -> xr.Dataset:
    """Two rates, two architectures, the simulation and two methods, two statistics.

    mono's mean TTFT CI lies below disagg's at rate 1 (1.0 [0.95, 1.05] vs 2.0
    [1.9, 2.1]) and overlaps at rate 2 (3.0 [2.8, 3.2] vs 3.1 [2.9, 3.3]); method 'good'
    errs at most -6 % (mean, at load 0.6) and +9 % (P99, at load 0.85; +7 % below 0.8),
    method 'bad' up to +60 % (P99)."""
    rates = [1.0, 2.0]
    archs, sources, stats = ["mono", "disagg"], ["simulation", "good", "bad"], \
        ["mean_ttft_s", "p99_ttft_s"]
    sim = np.array([[[1.0, 5.0], [2.0, 9.0]], [[3.0, 12.0], [3.1, 14.0]]])  # rate, arch, stat
    err = {"good": np.array([[[0.01, 0.07], [-0.04, 0.02]], [[-0.06, -0.05], [0.0, 0.09]]]),
           "bad": np.array([[[0.2, 0.6], [0.1, -0.3]], [[0.1, 0.5], [0.0, 0.4]]])}
    value = np.stack([sim, sim * (1 + err["good"]), sim * (1 + err["bad"])], axis=2)
    rel = np.stack([np.zeros_like(sim), err["good"], err["bad"]], axis=2)
    half = np.array([[[0.05, 0.5], [0.1, 0.5]], [[0.2, 0.5], [0.2, 0.5]]])
    dims = ("arrival_rate_per_s", "architecture", "source", "statistic")
    ds = xr.Dataset(
        {"value": (dims, value), "rel_error": (dims, rel),
         "verdict": (dims, np.zeros(value.shape, "int8")),
         "ci_low": (("arrival_rate_per_s", "architecture", "statistic"), sim - half),
         "ci_high": (("arrival_rate_per_s", "architecture", "statistic"), sim + half),
         "offered_load": (("arrival_rate_per_s", "architecture"), [[0.3, 0.4], [0.6, 0.85]]),
         "stable": (("arrival_rate_per_s", "architecture"), np.ones((2, 2), "int8"))},
        coords={"arrival_rate_per_s": rates, "architecture": archs, "source": sources,
                "statistic": stats})
    ds.attrs.update(default_method="bad", confidence=0.95, title="hand")
    return ds


def test_headline_names_the_method_to_trust_with_its_worst_errors():
    h = headline(hand_dataset())
    assert h[0] == ("Closed forms: trust good most. Its worst error against the simulation "
                    "over the 4 stable (point, architecture) pairs: mean -6.0%, P99 +9.0%; "
                    "below offered load 0.8: mean -6.0%, P99 +7.0%.")
    assert h[1] == "The default method, bad: mean +20.0%, P99 +60.0%."
    assert h[2] == "Least trustworthy here: bad (P99 off by up to +60.0%)."


def test_headline_says_which_architecture_wins_where_and_with_what_confidence():
    h = headline(hand_dataset())
    assert h[3] == ("Architectures, by simulated mean TTFT over arrival rate (requests/s) "
                    "(95% CIs apart): lower for mono at 1 of 2 points (by 2x; 1); "
                    "neither at 1 (their 95% CIs overlap: 2).")


def test_an_unstable_architecture_loses_and_is_named():
    ds = hand_dataset()
    ds["stable"].loc[{"arrival_rate_per_s": 2.0, "architecture": "disagg"}] = 0
    ds["offered_load"].loc[{"arrival_rate_per_s": 2.0, "architecture": "disagg"}] = 1.2
    h = headline(ds)
    assert "lower for mono at 2 of 2 points" in h[3]
    assert h[4] == "Unstable (offered load >= 1): disagg at 2."
    # the unstable pair no longer counts for the closed forms: 3 stable pairs
    assert "over the 3 stable (point, architecture) pairs" in h[0]


def test_report_opens_with_the_conclusion_and_colours_verdicts(tmp_path):
    ds = hand_dataset()
    ds["ttft_quantile"] = (("arrival_rate_per_s", "architecture", "kind", "prob"),
                           np.tile(np.linspace(0.1, 2.0, 3), (2, 2, 2, 1)))
    ds = ds.assign_coords(kind=["simulation", "analytic (good)"], prob=[0.1, 0.5, 0.9])
    ds["verdict"].loc[{"source": "bad"}] = 2
    build_report(ds, tmp_path)
    md = (tmp_path / "report.md").read_text().splitlines()
    assert md[0] == "# hand" and md[2] == "## Conclusion"
    assert md[4].startswith("- Closed forms: trust good most.")
    page = (tmp_path / "report.html").read_text()
    assert page.index("Conclusion") < page.index("Agreement by method")
    assert "<td class='v-diverge'>" in page and "<td class='v-agree'>" in page
    assert "simulation, s (95% CI)" in page and "offered load (1)" in page
    assert incomplete_banner(ds) == ""
