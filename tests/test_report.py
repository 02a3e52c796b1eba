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
                    "over the 4 stable (point, architecture) pairs: mean TTFT -6.0%, P99 TTFT "
                    "+9.0%; below offered load 0.8: mean TTFT -6.0%, P99 TTFT +7.0%.")
    assert h[1] == "The default method, bad: mean TTFT +20.0%, P99 TTFT +60.0%."
    assert h[2] == "Least trustworthy here: bad (P99 TTFT off by up to +60.0%)."


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
    assert "simulation (95% CI)" in page and "offered load (1)" in page
    assert "<td>1 [0.95, 1.05] s</td>" in page  # every value with its unit
    assert incomplete_banner(ds) == ""


def batched_dataset() -> xr.Dataset:
    """The hand dataset as a batched sweep: TPOT and SLO attainment added, labelled by
    coordinates; the closed form gives means only (its attainment is NaN)."""
    base = hand_dataset().sel(source=["simulation", "good"])
    stats = ["mean_ttft_s", "p99_ttft_s", "mean_tpot_s", "slo_attainment"]
    # attainment: mono 0.9 [0.88, 0.92] vs disagg 0.99 [0.98, 1.0] at rate 1, overlapping at 2
    att = np.array([[0.9, 0.99], [0.95, 0.955]])
    att_half = np.array([[0.02, 0.01], [0.02, 0.02]])
    ttft = base.value.sel(source="simulation", statistic="mean_ttft_s").values
    half = (base.ci_high - base.ci_low).sel(statistic="mean_ttft_s").values / 2
    sim = np.stack([base.value.sel(source="simulation").values[..., 0],
                    base.value.sel(source="simulation").values[..., 1], ttft / 10, att], -1)
    form = np.stack([base.value.sel(source="good").values[..., 0],
                     base.value.sel(source="good").values[..., 1],
                     base.value.sel(source="good").values[..., 0] / 10,
                     np.full_like(att, np.nan)], -1)
    halves = np.stack([half, (base.ci_high - base.ci_low).values[..., 1] / 2, half / 10,
                       att_half], -1)
    value = np.stack([sim, form], axis=2)
    rel = np.stack([np.zeros_like(sim), form / sim - 1], axis=2)
    verdict = np.where(np.isnan(value), -1, 0).astype("int8")
    dims = ("arrival_rate_per_s", "architecture", "source", "statistic")
    ds = xr.Dataset(
        {"value": (dims, value), "rel_error": (dims, rel), "verdict": (dims, verdict),
         "ci_low": (("arrival_rate_per_s", "architecture", "statistic"), sim - halves),
         "ci_high": (("arrival_rate_per_s", "architecture", "statistic"), sim + halves),
         "offered_load": base.offered_load, "stable": base.stable},
        coords={"arrival_rate_per_s": base.arrival_rate_per_s, "architecture": base.architecture,
                "source": ["simulation", "good"], "statistic": stats,
                "label": ("statistic", ["mean TTFT", "P99 TTFT", "mean TPOT",
                                        "SLO attainment"]),
                "unit": ("statistic", ["s", "s", "s", "1"]),
                "metric": ("statistic", ["ttft", "ttft", "tpot", "attainment"])})
    ds.attrs.update(serving="batched", default_method="good", confidence=0.95, title="b")
    return ds


def test_batched_headline_compares_tpot_and_attainment_the_right_way_round():
    h = headline(batched_dataset())
    # attainment is better higher: disagg wins at rate 1 (0.99 vs 0.9 = 1.1x)
    assert h[-1] == ("Architectures, by simulated SLO attainment over arrival rate "
                     "(requests/s) (95% CIs apart): higher for disagg at 1 of 2 points (by "
                     "1.1x; 1); neither at 1 (their 95% CIs overlap: 2).")
    # TPOT is better lower, as TTFT (TPOT = TTFT / 10 here)
    assert h[-2].startswith("Architectures, by simulated mean TPOT over arrival rate "
                            "(requests/s) (95% CIs apart): lower for mono at 1 of 2 points")
    # a statistic the closed form does not give is left out of its errors, not shown 'n/a'
    assert "SLO attainment" not in h[0] and "mean TPOT -6.0%" in h[0]


def test_batched_report_labels_each_statistic_with_its_unit(tmp_path):
    ds = batched_dataset()
    ds["ttft_quantile"] = (("arrival_rate_per_s", "architecture", "kind", "prob"),
                           np.tile(np.linspace(0.1, 2.0, 3), (2, 2, 2, 1)))
    ds = ds.assign_coords(kind=["simulation", "analytic (good)"], prob=[0.1, 0.5, 0.9])
    build_report(ds, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "<td>SLO attainment</td>" in page and "<td>0.9 [0.88, 0.92] 1</td>" in page
    assert "<td>n/a</td>" in page  # the closed form's missing attainment
    assert "Colocated vs disaggregated" in page


def test_points_without_a_closed_form_are_counted_not_trusted():
    """A batched sweep point the forms do not price (bursty arrivals): its load is NaN
    and its values n/a; the headline counts it apart instead of reading a load of NaN."""
    ds = batched_dataset()
    ds["offered_load"].loc[{"arrival_rate_per_s": 2.0}] = np.nan
    ds["value"].loc[{"arrival_rate_per_s": 2.0, "source": "good"}] = np.nan
    ds["rel_error"].loc[{"arrival_rate_per_s": 2.0, "source": "good"}] = np.nan
    line = next(h for h in headline(ds) if h.startswith("Where to trust good"))
    assert line == ("Where to trust good: mono: within 10% up to offered load 0.30 (no closed "
                    "form at 1 stable point); disagg: within 10% up to offered load 0.40 (no "
                    "closed form at 1 stable point).")
