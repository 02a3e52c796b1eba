"""One validation point: both architectures simulated on the same requests, every analytic
method beside them, and a verdict per method and statistic.

The result is an ``xarray.Dataset`` over ``architecture x source x statistic`` (plus
``prob`` for TTFT distributions), which :mod:`validate.combine` merges across a sweep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import xarray as xr

import analytic
from simulation import compare, quantile_key
from spec import SimConfig

ARCHITECTURES: tuple[str, ...] = ("mono", "disagg")
STATISTICS: tuple[str, ...] = ("mean_ttft_s", "p50_ttft_s", "p90_ttft_s", "p99_ttft_s")
#: Verdict codes (CF flag convention: ``flag_values`` / ``flag_meanings`` in attrs).
VERDICTS: dict[str, int] = {"agree": 0, "close": 1, "diverge": 2, "unstable": 3,
                            "missing": 4}  # missing: a sweep point with no result
MISSING_VERDICT = -1
#: Probabilities at which TTFT distributions are stored (for CDF figures).
CDF_PROBS = np.concatenate([np.linspace(0.01, 0.95, 95), [0.96, 0.97, 0.98, 0.99, 0.995,
                                                          0.999]])

#: Every statistic a validation dataset can hold: ``(label, metric, unit)``, the one
#: definition the datasets' ``metric`` / ``unit`` / ``label`` coordinates (and so the
#: report's axes) are made from. TPOT: a request's (E2E - TTFT) / (output tokens - 1);
#: SLO attainment: the fraction of requests meeting both the TTFT and the TPOT bound.
STATISTIC_INFO: dict[str, tuple[str, str, str]] = {
    "mean_ttft_s": ("mean TTFT", "ttft", "s"), "p50_ttft_s": ("P50 TTFT", "ttft", "s"),
    "p90_ttft_s": ("P90 TTFT", "ttft", "s"), "p99_ttft_s": ("P99 TTFT", "ttft", "s"),
    "mean_tpot_s": ("mean TPOT", "tpot", "s"), "p90_tpot_s": ("P90 TPOT", "tpot", "s"),
    "mean_e2e_s": ("mean E2E", "e2e", "s"),
    "slo_attainment": ("SLO attainment", "attainment", "1")}


def statistic_coords(statistics) -> dict[str, tuple[str, list[str], dict[str, str]]]:
    """The ``metric``, ``unit`` and ``label`` coordinates along ``statistic``, from
    :data:`STATISTIC_INFO` (``ds.set_xindex("metric").sel(metric="tpot")`` selects one)."""
    info = [STATISTIC_INFO[s] for s in statistics]
    return {"metric": ("statistic", [i[1] for i in info], {"long_name": "metric"}),
            "unit": ("statistic", [i[2] for i in info], {"long_name": "unit of the value"}),
            "label": ("statistic", [i[0] for i in info], {"long_name": "statistic"})}


@dataclass(frozen=True)
class Thresholds:
    """When a method *agrees* or *diverges* with the simulation.

    ``agree``: the value lies in the simulation's CI widened by ``tolerance`` (relative)
    on each side. ``diverge``: it lies outside the CI widened by ``band``. Between the
    two: ``close``. Points whose offered load is >= 1 in some pool: ``unstable``.
    """

    tolerance: float = 0.05
    band: float = 0.15

    def __post_init__(self) -> None:
        for name in ("tolerance", "band"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v < 1):
                raise ValueError(f"validation.{name} = {v!r}: must be a number in [0, 1)")
        if self.band < self.tolerance:
            raise ValueError(f"validation.band = {self.band!r}: must be >= "
                             f"validation.tolerance = {self.tolerance!r}")


def verdict(value: np.ndarray, ci_low: np.ndarray, ci_high: np.ndarray,
            stable: np.ndarray, th: Thresholds) -> np.ndarray:
    """Verdict codes (:data:`VERDICTS`) of analytic ``value`` against the simulation's CI.

    Broadcasts. A missing CI (one replication) or value (NaN) gives ``-1``.
    """
    value, lo, hi, stable = np.broadcast_arrays(value, ci_low, ci_high, stable)
    inside = (value >= lo * (1 - th.tolerance)) & (value <= hi * (1 + th.tolerance))
    near = (value >= lo * (1 - th.band)) & (value <= hi * (1 + th.band))
    out = np.where(inside, VERDICTS["agree"], np.where(near, VERDICTS["close"],
                                                       VERDICTS["diverge"]))
    missing = ~(np.isfinite(lo) & np.isfinite(hi)) | np.isnan(value)
    out = np.where(missing, MISSING_VERDICT, out)
    out = np.where(~stable.astype(bool), VERDICTS["unstable"], out)
    return out.astype(np.int8)


def run_point(config: SimConfig, *, methods: tuple[str, ...], thresholds: Thresholds,
              engine: str = "fast", confidence: float = 0.95) -> xr.Dataset:
    """Simulate both architectures (common random numbers) and price them analytically.

    Returns
    -------
    xarray.Dataset
        ``value(architecture, source, statistic)`` with ``source`` = ``simulation`` then
        each method; ``ci_low`` / ``ci_high(architecture, statistic)`` of the simulation
        (Student t across replications); ``rel_error`` and ``verdict`` per method;
        ``offered_load``, ``utilisation``, ``stable``, ``n_measured(architecture)``;
        ``ttft_quantile(architecture, kind, prob)`` for distribution plots.
    """
    sims = simulate_both(config, engine, confidence)
    clusters = {"mono": config.cluster_mono, "disagg": config.cluster_disagg}
    sources = ("simulation", *methods)
    shape = (len(ARCHITECTURES), len(sources), len(STATISTICS))
    value = np.full(shape, np.nan)
    ci = np.full((2, len(ARCHITECTURES), len(STATISTICS)), np.nan)
    load = np.zeros(len(ARCHITECTURES))
    util = np.zeros(len(ARCHITECTURES))
    n_measured = np.zeros(len(ARCHITECTURES))
    dist = np.full((len(ARCHITECTURES), 2, len(CDF_PROBS)), np.nan)
    for a, arch in enumerate(ARCHITECTURES):
        summary = sims[arch].summary
        value[a, 0], ci[:, a], dist[a, 0] = simulated(sims[arch], STATISTICS)
        pools = [k[len("offered_load_"):] for k in summary if k.startswith("offered_load_")]
        load[a] = max(summary[f"offered_load_{p}"] for p in pools)
        util[a] = max(summary[f"utilisation_{p}"] for p in pools)
        n_measured[a] = summary["n_measured"]
        for m, method in enumerate(methods, start=1):
            est = analytic.estimate(config.workload, clusters[arch], method)
            value[a, m, 0] = est.mean_ttft_s
            value[a, m, 1:] = est.quantile([0.5, 0.9, 0.99])
            if method == analytic.DEFAULT_METHOD:
                dist[a, 1] = est.quantile(CDF_PROBS)
    stable = load < 1.0
    return point_dataset(
        value, ci, stable, thresholds, confidence, sources=sources, statistics=STATISTICS,
        analytic_kind=analytic.DEFAULT_METHOD, value_attrs={"units": "s",
                                                            "long_name": "TTFT statistic"},
        arrays={"offered_load": (load, {"units": "1",
                                        "long_name": "offered load (busiest pool)"}),
                "utilisation": (util, {"units": "1",
                                       "long_name": "simulated utilisation (busiest pool)"}),
                "n_measured": (n_measured, {"long_name": "measured requests (all "
                                                         "replications, mean)"})},
        stable_meaning="offered load < 1 in every pool", dist=dist)


def simulate_both(config: SimConfig, engine: str, confidence: float) -> dict:
    """``{architecture: SimulationResult}``: both architectures of ``config`` on the same
    requests, every quantile the report draws taken per replication (no request kept),
    CIs at ``confidence``."""
    qs = tuple(sorted(set(config.quantiles) | set(np.round(CDF_PROBS, 6).tolist())))
    cmp = compare(replace(config, quantiles=qs, mode="both"), engine=engine,
                  keep_requests=False)
    for res in (cmp.mono, cmp.disagg):
        res.confidence = confidence
    return dict(zip(ARCHITECTURES, (cmp.mono, cmp.disagg), strict=True))


def simulated(res, statistics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One architecture's simulated ``statistics`` (means over replications), their CIs
    (``[low, high]`` rows) and its TTFT quantiles at :data:`CDF_PROBS`."""
    summary, cis = res.summary, res.ci
    return (np.array([summary[s] for s in statistics]),
            np.array([cis[s] for s in statistics]).T,
            np.array([summary[quantile_key(q, "ttft_s")] for q in np.round(CDF_PROBS, 6)]))


def point_dataset(value: np.ndarray, ci: np.ndarray, stable: np.ndarray,
                  thresholds: Thresholds, confidence: float, *, sources, statistics,
                  analytic_kind: str, value_attrs: dict, arrays: dict,
                  stable_meaning: str, dist: np.ndarray,
                  missing_meaning: str = "-1: reference, no CI or failed point",
                  attrs: dict | None = None) -> xr.Dataset:
    """One point's dataset, judged: ``value(architecture, source, statistic)`` (the
    simulation first), its ``ci`` (``[low, high]`` by architecture and statistic), the
    relative errors and verdicts against it, ``stable`` and the per-architecture
    ``arrays`` (``{name: (values, attrs)}``), the TTFT quantiles ``dist``; the one layout
    of every serving model's points (:func:`run_point`,
    :func:`validate.batched_point.run_batched_point`)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (value - value[:, :1, :]) / value[:, :1, :]
    codes = verdict(value, ci[0][:, None, :], ci[1][:, None, :], stable[:, None, None],
                    thresholds)
    codes[:, 0, :] = MISSING_VERDICT  # the simulation is the reference, not judged
    rel[:, 0, :] = 0.0
    dims3 = ("architecture", "source", "statistic")
    units = {k: v for k, v in value_attrs.items() if k == "units"}
    ds = xr.Dataset(
        {
            "value": (dims3, value, value_attrs),
            "ci_low": (("architecture", "statistic"), ci[0],
                       {**units, "long_name": f"simulation {confidence:.0%} CI low"}),
            "ci_high": (("architecture", "statistic"), ci[1],
                        {**units, "long_name": f"simulation {confidence:.0%} CI high"}),
            "rel_error": (dims3, rel, {"units": "1",
                                       "long_name": "relative error vs simulation mean"}),
            "verdict": (dims3, codes, {
                "long_name": "agreement with the simulation",
                "flag_values": np.array(list(VERDICTS.values()), dtype=np.int8),
                "flag_meanings": " ".join(VERDICTS),
                "missing_value_meaning": missing_meaning}),
            **{name: ("architecture", v, a) for name, (v, a) in arrays.items()},
            "stable": ("architecture", np.asarray(stable).astype(np.int8),
                       {"long_name": stable_meaning}),
            "ttft_quantile": (("architecture", "kind", "prob"), dist,
                              {"units": "s", "long_name": "TTFT quantile"}),
        },
        coords={
            "architecture": list(ARCHITECTURES),
            "source": list(sources),
            "statistic": list(statistics),
            "kind": ["simulation", f"analytic ({analytic_kind})"],
            "prob": ("prob", CDF_PROBS, {"long_name": "probability", "units": "1"}),
            **statistic_coords(statistics),
        },
        attrs=attrs or {},
    )
    ds["statistic"].attrs["long_names"] = ", ".join(STATISTIC_INFO[s][0] for s in statistics)
    return ds


def format_table(ds: xr.Dataset) -> str:
    """A plain-text table of one point: simulation with CI, each method, error, verdict."""
    names = {v: k for k, v in VERDICTS.items()}
    lines = []
    for arch in ds.architecture.values:
        d = ds.sel(architecture=arch)
        lines.append(f"{arch}: offered load {float(d.offered_load):.3f}, "
                     f"{int(d.n_measured)} measured requests per replication"
                     + ("" if int(d.stable) == 1 else "; UNSTABLE: its backlog grows, so "
                        "its statistics grow with the run's length"))
        head = f"  {'statistic':<16}{'simulation (95% CI)':>30}"
        for src in ds.source.values[1:]:
            head += f"{src:>24}"
        lines.append(head)
        for stat in ds.statistic.values:
            sim = float(d.value.sel(source="simulation", statistic=stat))
            lo, hi = float(d.ci_low.sel(statistic=stat)), float(d.ci_high.sel(statistic=stat))
            row = f"  {stat:<16}{sim:>10.4f} [{lo:.4f}, {hi:.4f}]"
            row = f"{row:<48}"
            for src in ds.source.values[1:]:
                v = float(d.value.sel(source=src, statistic=stat))
                e = float(d.rel_error.sel(source=src, statistic=stat))
                code = int(d.verdict.sel(source=src, statistic=stat))
                word = names.get(code, "n/a")
                if math.isnan(v):
                    row += f"{'n/a':>9} {'':>7} {word:<6}"
                else:
                    row += f"{v:>9.4f} {e:+7.1%} {word:<6}"
            lines.append(row)
        note = str(ds.attrs.get(f"closed_form_{arch}", ""))
        if note.startswith("none: "):
            lines.append(f"  no closed form: {note[len('none: '):]}")
    return "\n".join(lines)
