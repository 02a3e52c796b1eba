"""Fidelity of the seed model's closed forms over the region users go (issue 14).

A fixed grid of clusters (1 to 64 GPUs; disaggregated splits from 1:7 to 7:1), offered
loads (the busiest pool's, 0.3 to 0.95) and token-length spreads (``sigma`` of log tokens,
prompts and outputs alike, 0.3 to 1.5) is simulated once with the exact fast engine
(:func:`simulate_grid`); every closed form is then priced on the same points
(:func:`price_grid`) and :func:`fidelity` counts where each lands within the tolerances:
mean TTFT within 5 %, P90 within 10 %, P99 within 15 % of the simulation (P50 within
10 %, reported beside them). Each architecture gets its own arrival rate, the one that
puts its busiest pool at the point's load, so a 7:1 split is measured at the same loads
as a 1:7 split.

The simulation is sized per point so that its 95 % CI half-width stays well inside the
tolerance (:func:`requests_per_replication`), and each statistic is estimated with the
replications' sampled service moments as control variates (:func:`service_controls`):
with wide token laws the rare very long requests a replication happens to draw move its
waits far more than anything else, and their sampled moments, whose expectations are
known exactly, take that noise out. The tables say how many points stayed too wide.
``python -m validate +sweep=grid`` runs it all; ``scripts/make_fidelity_reference.py``
stores the simulated side in ``tests/data/fidelity_reference.json`` so that the tests
re-price the closed forms against it in seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import analytic
from conf.schema import GridConf
from reports.build import STAT_LABELS, markdown_table
from spec import DisaggregatedCluster, MonolithicCluster, SimConfig, TokenDist

#: Statistics compared and the relative tolerance each must meet (issue 14).
TOLERANCES: dict[str, float] = {"mean_ttft_s": 0.05, "p50_ttft_s": 0.10,
                                "p90_ttft_s": 0.10, "p99_ttft_s": 0.15}
#: Share of the points with load <= :data:`MAX_LOAD` that must be within tolerance.
TARGETS: dict[str, float] = {"mean_ttft_s": 0.98, "p90_ttft_s": 0.95, "p99_ttft_s": 0.90}
#: Upper end of the validated region (offered load of the busiest pool).
MAX_LOAD = 0.9


_DEFAULT = GridConf()
#: Replications a grid point is simulated with by default (``validation.grid.replications``).
REPLICATIONS: int = _DEFAULT.replications
#: Fewest replications a point's control-variate interval needs: its three controls, the
#: intercept and one degree of freedom (:func:`simulation.metrics.control_variate_interval`).
MIN_REPLICATIONS = 5


@dataclass(frozen=True)
class GridAxes:
    """The grid's axes; the defaults (the committed grid of issue 14) are those of
    :class:`conf.schema.GridConf`."""

    total_gpus: tuple[int, ...] = tuple(_DEFAULT.total_gpus)
    prefill_share: tuple[float, ...] = tuple(_DEFAULT.prefill_share)
    load: tuple[float, ...] = tuple(_DEFAULT.load)
    token_sigma: tuple[float, ...] = tuple(_DEFAULT.token_sigma)

    def __post_init__(self) -> None:
        checks = {"total_gpus": (1, 4096, True), "prefill_share": (0.0, 1.0, False),
                  "load": (0.0, 1.0, False), "token_sigma": (0.0, 3.0, False)}
        for name, (low, high, whole) in checks.items():
            values = tuple(getattr(self, name))
            if not values:
                raise ValueError(f"validation.grid.{name}: must list at least one value")
            for v in values:
                ok = isinstance(v, int | float) and math.isfinite(v)
                ok = ok and (low <= v <= high if whole else low < v < high)
                if whole:
                    ok = ok and float(v).is_integer()
                if not ok:
                    rng = f"a whole number in [{low}, {high}]" if whole else \
                        f"a number in ({low:g}, {high:g})"
                    raise ValueError(f"validation.grid.{name} = {v!r}: must be {rng}")
            object.__setattr__(self, name, tuple(int(v) if whole else float(v)
                                                 for v in values))

    @classmethod
    def from_mapping(cls, data: Any) -> GridAxes:
        """The axes named in ``data`` (a stored document's ``axes``, or the app's
        ``validation.grid``, whose other keys are ignored)."""
        return cls(**{f.name: tuple(data[f.name]) for f in fields(cls)})

    def to_mapping(self) -> dict[str, list]:
        """The axes as lists (JSON)."""
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class GridPoint:
    """One point: an architecture, its pools, a load and a token spread."""

    architecture: str  # "mono" or "disagg"
    prefill_gpus: int  # mono: the whole cluster
    decode_gpus: int  # mono: 0
    load: float
    token_sigma: float

    @property
    def total_gpus(self) -> int:
        return self.prefill_gpus + self.decode_gpus


def split(total_gpus: int, share: float) -> int:
    """Prefill GPUs of a ``total_gpus`` budget at ``share``: nearest, in ``[1, total - 1]``."""
    return int(min(total_gpus - 1, max(1, math.floor(total_gpus * share + 0.5))))


def grid_points(axes: GridAxes = GridAxes()) -> list[GridPoint]:
    """Every point of the grid, in a fixed order (which fixes each point's seed)."""
    clusters: list[tuple[str, int, int]] = [("mono", n, 0) for n in axes.total_gpus]
    for n in axes.total_gpus:
        if n < 2:
            continue
        for p in sorted({split(n, s) for s in axes.prefill_share}):
            clusters.append(("disagg", p, n - p))
    return [GridPoint(arch, p, d, load, sigma) for arch, p, d in clusters
            for sigma in axes.token_sigma for load in axes.load]


def point_config(base: SimConfig, point: GridPoint) -> tuple[SimConfig, Any]:
    """The workload and cluster of ``point``: both token laws get the point's ``sigma``
    (their ``mu`` and minimum as in ``base``) and the rate that puts the busiest pool at
    the point's load."""
    wl = base.workload
    laws = {k: _with_sigma(getattr(wl, k), point.token_sigma)
            for k in ("prompt_tokens", "output_tokens")}
    mono, dis = base.cluster_mono, base.cluster_disagg
    if point.architecture == "mono":
        cluster: Any = MonolithicCluster(point.prefill_gpus, mono.prefill_tokens_per_s,
                                         mono.decode_tokens_per_s)
    else:
        cluster = DisaggregatedCluster(point.prefill_gpus, point.decode_gpus,
                                       dis.prefill_tokens_per_s, dis.decode_tokens_per_s,
                                       dis.kv_transfer_s_per_token)
    # the busiest pool's utilisation at 1 request/s (the estimate's one definition of it)
    at_one = analytic.estimate(replace(wl, arrival_rate_per_s=1.0, **laws), cluster)
    per_request = max(float(u) for u in at_one.utilisation.values())
    workload = replace(wl, arrival_rate_per_s=point.load / per_request, **laws)
    return replace(base, workload=workload, mode=point.architecture), cluster


def grid_model(base: SimConfig | dict[str, Any]) -> dict[str, Any]:
    """What a grid's numbers depend on besides its axes: the arrival process, both
    clusters' speeds, and each token law's ``mu`` and minimum (the axes set ``sigma``).
    Takes a config or its stored mapping."""
    from spec import config_from_mapping, config_to_mapping

    cfg = config_from_mapping(base) if isinstance(base, dict) else base
    m = config_to_mapping(cfg)
    laws = {k: [getattr(cfg.workload, k).mu, getattr(cfg.workload, k).min_value]
            for k in ("prompt_tokens", "output_tokens")}
    return {"arrival": m["arrival"], "cluster_mono": m["cluster_mono"],
            "cluster_disagg": m["cluster_disagg"], **laws}


def _with_sigma(law: TokenDist, sigma: float) -> TokenDist:
    return TokenDist("log", mean=law.mu, sigma=sigma, min_value=law.min_value,
                     name=law.name)


def requests_per_replication(load: float, service_scv: float, *, base: float = 4000.0,
                             low: float = 50_000, high: float = 4_000_000) -> int:
    r"""Requests per replication for a point: ``base (1 + c_s^2) / (1 - rho)^2``, clipped.

    The variance of a simulated mean wait grows like the relaxation time of the queue,
    of order :math:`(1 + c_s^2) / (1 - \rho)^2` service times (Whitt, "Planning queueing
    simulations", Management Science 35, 1989), so this keeps the CI half-width roughly
    even across the grid; ``low`` keeps P99 estimated from at least 500 tail requests.
    """
    n = base * (1.0 + service_scv) / (1.0 - load) ** 2
    return int(min(high, max(low, n)))


def _bottleneck_scv(config: SimConfig, point: GridPoint) -> float:
    wl, cl = config.workload, config.cluster_mono
    (ep, vp), (eo, vo) = ((d.mean_tokens(), d.var_tokens())
                          for d in (wl.prompt_tokens, wl.output_tokens))
    if point.architecture == "mono":
        es = ep / cl.prefill_tokens_per_s + eo / cl.decode_tokens_per_s
        return (vp / cl.prefill_tokens_per_s**2 + vo / cl.decode_tokens_per_s**2) / es**2
    return max(vp / ep**2, vo / eo**2)


def service_controls(config: SimConfig, mono: bool) -> dict[str, float]:
    r"""The control variates of a point and their exact means: summary key -> ``E``.

    Monolithic (one pool, hold ``S = P / r_p + O / r_d``): the mean prefill time
    ``E[P] / r_p`` (a term of every TTFT) and ``E[S^2] = E[P^2] / r_p^2 + 2 E[P] E[O] /
    (r_p r_d) + E[O^2] / r_d^2`` (the P-K numerator of the wait). Disaggregated:
    ``E[P] / r_p``, ``E[P^2] / r_p^2`` and ``E[O^2] / r_d^2`` (the two pools' waits; the
    KV transfer is proportional to the prompt, so the first covers it). Prompt and
    output counts are independent; their moments are the token laws' exact ones
    (:meth:`spec.TokenDist.raw_moment`).
    """
    wl = config.workload
    cl = config.cluster_mono if mono else config.cluster_disagg
    rp, rd = cl.prefill_tokens_per_s, cl.decode_tokens_per_s
    p1, p2 = (wl.prompt_tokens.raw_moment(k) for k in (1, 2))
    o1, o2 = (wl.output_tokens.raw_moment(k) for k in (1, 2))
    if mono:
        return {"mean_prefill_s": p1 / rp,
                "mean_sq_service_gpu_s2": p2 / rp**2 + 2 * p1 * o1 / (rp * rd) + o2 / rd**2}
    return {"mean_prefill_s": p1 / rp, "mean_sq_service_prefill_s2": p2 / rp**2,
            "mean_sq_service_decode_s2": o2 / rd**2}


def _simulate_one(args: tuple[SimConfig, GridPoint, int, int]) -> dict[str, Any]:
    from simulation import simulate
    from simulation.metrics import control_variate_interval

    base, point, seed, replications = args
    config, cluster = point_config(base, point)
    n = requests_per_replication(point.load, _bottleneck_scv(config, point))
    sim_s = n / config.workload.arrival_rate_per_s
    config = replace(config, random_seed=seed, replications=replications,
                     sim_seconds=1.1 * sim_s, warmup_seconds=0.1 * sim_s)
    res = simulate(config, cluster, keep_requests=False)
    summary, ci, reps = res.summary, res.ci, res.replications
    mono = point.architecture == "mono"
    controls = service_controls(config, mono)
    c = np.array([[r[k] for k in controls] for r in reps])
    mu = np.array(list(controls.values()))
    pools = ("gpu",) if mono else ("prefill", "decode")
    out: dict[str, Any] = {"point": asdict(point), "seed": seed,
                           "arrival_rate_per_s": config.workload.arrival_rate_per_s,
                           "requests_per_replication": n, "replications": replications,
                           "n_measured": summary["n_measured"] * replications}
    for stat in TOLERANCES:
        out[stat] = list(control_variate_interval([r[stat] for r in reps], c, mu))
    out["plain"] = {stat: [summary[stat], *ci[stat]] for stat in TOLERANCES}
    for pool in pools:
        # the simulation names the one queue of a monolithic cluster "prefill"
        key = "prefill" if pool == "gpu" else pool
        out[f"mean_wait_{pool}_s"] = list(control_variate_interval(
            [r[f"mean_{key}_wait_s"] for r in reps], c, mu))
        out[f"prob_wait_{pool}"] = [summary[f"prob_wait_{key}"], *ci[f"prob_wait_{key}"]]
    return out


def simulate_grid(points: Sequence[GridPoint], base: SimConfig, *, seed: int = 42,
                  replications: int = REPLICATIONS, workers: int = 1
                  ) -> list[dict[str, Any]]:
    """Simulate every point with the fast engine; point ``i`` uses seed ``seed + i``.

    Returns one record per point: the point, its rate and run size, and each statistic as
    ``[estimate, ci_low, ci_high]`` (Student t over ``replications``). The same seed gives
    the same records whatever ``workers``.
    """
    jobs = [(base, p, seed + i, replications) for i, p in enumerate(points)]
    if workers <= 1:
        return [_simulate_one(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_simulate_one, jobs, chunksize=1))


def closed_forms() -> dict[str, dict[str, str]]:
    """The closed forms compared: every mean-wait method with the default wait law and
    linking, then the default method with each other wait law and linking (so the table
    shows what each choice buys). Name -> keyword arguments of :func:`analytic.estimate`.
    """
    out = {m: {"method": m} for m in analytic.METHODS}
    for law in analytic.WAIT_LAWS:
        if law != analytic.DEFAULT_WAIT_LAW:
            out[f"{analytic.DEFAULT_METHOD}, {law} wait"] = {"wait_law": law}
    for link in analytic.LINKINGS:
        if link != analytic.DEFAULT_LINKING:
            out[f"{analytic.DEFAULT_METHOD}, {link} linking"] = {"linking": link}
    out[f"{analytic.DEFAULT_METHOD}, exponential wait, qna linking (before issue 14)"] = {
        "wait_law": "exponential", "linking": "qna"}
    return out


def price_grid(records: Sequence[dict[str, Any]], base: SimConfig,
               sources: dict[str, dict[str, str]] | None = None) -> xr.Dataset:
    """Every closed form's TTFT statistics at the simulated points, beside the simulation.

    ``sources`` names the closed forms (keyword arguments of :func:`analytic.estimate`);
    by default :func:`closed_forms`.

    Returns
    -------
    xarray.Dataset
        ``value(point, source, statistic)`` (``source`` = ``simulation`` then each
        method), ``ci_low`` / ``ci_high(point, statistic)``, ``rel_error``, and per point
        ``architecture``, ``prefill_gpus``, ``decode_gpus``, ``total_gpus``,
        ``offered_load``, ``token_sigma``, ``arrival_rate_per_s``.
    """
    stats = tuple(TOLERANCES)
    forms = closed_forms() if sources is None else sources
    names = ("simulation", *forms)
    value = np.full((len(records), len(names), len(stats)), np.nan)
    ci = np.full((2, len(records), len(stats)), np.nan)
    pts = [GridPoint(**r["point"]) for r in records]
    for i, (rec, point) in enumerate(zip(records, pts, strict=True)):
        config, cluster = point_config(base, point)
        for s, stat in enumerate(stats):
            value[i, 0, s], ci[0, i, s], ci[1, i, s] = rec[stat]
        for m, kwargs in enumerate(forms.values(), start=1):
            est = analytic.estimate(config.workload, cluster, **kwargs)
            value[i, m, 0] = est.mean_ttft_s
            value[i, m, 1:] = est.quantile([0.5, 0.9, 0.99])
    rel = value / value[:, :1, :] - 1.0
    coords = {
        "point": np.arange(len(records)),
        "source": list(names),
        "statistic": list(stats),
        "architecture": ("point", [p.architecture for p in pts]),
        "prefill_gpus": ("point", [p.prefill_gpus for p in pts]),
        "decode_gpus": ("point", [p.decode_gpus for p in pts]),
        "total_gpus": ("point", [p.total_gpus for p in pts]),
        "offered_load": ("point", [p.load for p in pts], {"units": "1",
                                                  "long_name": "offered load, busiest pool"}),
        "token_sigma": ("point", [p.token_sigma for p in pts],
                        {"units": "1", "long_name": "sigma of log tokens"}),
        "arrival_rate_per_s": ("point", [r["arrival_rate_per_s"] for r in records],
                               {"units": "1/s"}),
    }
    dims3 = ("point", "source", "statistic")
    return xr.Dataset({
        "value": (dims3, value, {"units": "s", "long_name": "TTFT statistic"}),
        "ci_low": (("point", "statistic"), ci[0], {"units": "s"}),
        "ci_high": (("point", "statistic"), ci[1], {"units": "s"}),
        "rel_error": (dims3, rel, {"units": "1",
                                   "long_name": "relative error vs simulation"}),
    }, coords=coords)


def fidelity(ds: xr.Dataset, *, max_load: float = MAX_LOAD) -> xr.Dataset:
    """Share of the judged points within each statistic's tolerance.

    A point is *judged* for a statistic when its load is at most ``max_load`` and the
    simulation's 95 % CI half-width is at most half the tolerance (so that an error at
    the tolerance cannot be simulation noise); the rest are *undecided* and counted.

    Returns ``within(source, statistic)`` (share of the judged points),
    ``worst_low`` / ``worst_high(source, statistic)`` (most negative and most positive
    relative error over the judged points), ``judged(statistic)`` (their number) and
    ``n_points`` (points with load <= ``max_load``).
    """
    sel = ds.where(ds.offered_load <= max_load, drop=True)
    tol = xr.DataArray(list(TOLERANCES.values()), dims="statistic",
                       coords={"statistic": list(TOLERANCES)})
    half = (sel.ci_high - sel.ci_low) / 2 / sel.value.sel(source="simulation")
    judged = half <= tol / 2
    err = sel.rel_error.sel(source=sel.source[1:]).where(judged)
    within = (abs(err) <= tol).where(judged).sum("point") / judged.sum("point")
    return xr.Dataset({
        "within": within,
        "worst_low": err.min("point"),
        "worst_high": err.max("point"),
        "judged": judged.sum("point"),
        "n_points": sel.sizes["point"],
    })


def fidelity_table(ds: xr.Dataset, *, max_load: float = MAX_LOAD) -> str:
    """Markdown table: per closed form, the share of judged points within tolerance and
    the worst errors (see :func:`fidelity`), and how many points were judged."""
    fid = fidelity(ds, max_load=max_load)
    rows = []
    for src in fid.source.values:
        f = fid.sel(source=src)
        row = {"closed form": str(src)}
        for s in TOLERANCES:
            target = f" (target {TARGETS[s]:.0%})" if s in TARGETS else ""
            row[f"{_within(s)}{target}"] = f"{float(f.within.sel(statistic=s)):.1%}"
        for s in ("mean_ttft_s", "p99_ttft_s"):
            row[f"worst {STAT_LABELS[s]} error"] = (
                f"{float(f.worst_low.sel(statistic=s)):+.1%} / "
                f"{float(f.worst_high.sel(statistic=s)):+.1%}")
        rows.append(row)
    judged = ", ".join(f"{STAT_LABELS[s]} {int(fid.judged.sel(statistic=s))}"
                       for s in TOLERANCES)
    return (markdown_table(rows) + f"\nPoints with load <= {max_load:g}: "
            f"{int(fid.n_points)}; judged (simulation 95 % CI half-width <= half the "
            f"tolerance): {judged}.\n")


def breakdown_table(ds: xr.Dataset, source: str, by: str, *,
                    max_load: float = MAX_LOAD) -> str:
    """Markdown table: ``source``'s share within tolerance (judged points in brackets)
    for each value of the per-point coordinate ``by`` (``token_sigma``,
    ``architecture``, ``total_gpus``, ``offered_load``)."""
    rows = []
    for value in np.unique(ds[by].values):
        f = fidelity(ds.where(ds[by] == value, drop=True), max_load=max_load).sel(
            source=source)
        if int(f.n_points) == 0:
            continue
        row = {by: f"{value:g}" if isinstance(value, float | np.floating) else str(value)}
        for s in TOLERANCES:
            judged = int(f.judged.sel(statistic=s))
            row[_within(s)] = (f"{float(f.within.sel(statistic=s)):.1%} ({judged})"
                               if judged else "- (0)")
        rows.append(row)
    return markdown_table(rows)


def _within(stat: str) -> str:
    return f"{STAT_LABELS[stat]} within {TOLERANCES[stat]:.0%}"


def report_body(ds: xr.Dataset, *, max_load: float = MAX_LOAD) -> str:
    """The report after its title: the default's verdict, the table of every closed form,
    and the default broken down by token spread, architecture and cluster size."""
    default = default_source(ds)
    tolerances = ", ".join(f"{STAT_LABELS[s]} {t:.0%}" for s, t in TOLERANCES.items())
    parts = [conclusion(ds, default, max_load=max_load), "",
             fidelity_table(ds, max_load=max_load)]
    for by, what in (("token_sigma", "token spread (sigma of log tokens)"),
                     ("architecture", "architecture"),
                     ("total_gpus", "GPUs in the cluster")):
        parts += [f"`{default}` by {what}, judged points in brackets:", "",
                  breakdown_table(ds, default, by, max_load=max_load)]
    parts.append(f"Tolerances (relative to the simulated value): {tolerances}. Loads above "
                 f"{max_load:g} are outside the validated region and not counted.")
    return "\n".join(parts) + "\n"


def reference_document(axes: GridAxes, base: SimConfig, *, seed: int, replications: int,
                       workers: int = 1) -> dict[str, Any]:
    """Simulate the grid of ``axes`` and return it as a storable document: the seed, run
    sizes, axes, model config, elapsed time and one record per point (see
    :func:`simulate_grid`); :func:`read_reference` reads it back."""
    import platform
    import time

    from spec import config_to_mapping

    t0 = time.perf_counter()
    records = simulate_grid(grid_points(axes), base, seed=seed, replications=replications,
                            workers=workers)
    return {
        "about": "Fast-engine simulation of a fidelity grid (validate.fidelity); statistics "
                 "are [estimate, 95% CI low, 95% CI high] over the replications, with the "
                 "sampled service moments as control variates (validate.fidelity."
                 "service_controls); 'plain' holds the plain replication means.",
        "seed": seed,
        "replications": replications,
        "axes": axes.to_mapping(),
        "base_config": config_to_mapping(base),
        "machine": f"{platform.machine()}, {workers} worker(s)",
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "points": records,
    }


def read_reference(path: str | Path) -> dict[str, Any]:
    """A stored simulation of a grid (``scripts/make_fidelity_reference.py``'s JSON).

    Raises
    ------
    ValueError
        ``validation.grid.reference = 'path': ...`` when it cannot be read or is not one.
    """
    try:
        doc = json.loads(Path(path).read_text())
        GridAxes.from_mapping(doc["axes"])
        doc["points"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"validation.grid.reference = {str(path)!r}: not a stored grid "
                         f"simulation ({type(exc).__name__}: {exc})") from None
    return doc


def default_source(ds: xr.Dataset) -> str:
    """The name the default closed form (default method, wait law and linking) has in
    ``ds`` (see :func:`closed_forms`)."""
    names = [str(v) for v in ds.source.values]
    if analytic.DEFAULT_METHOD not in names:
        raise ValueError(f"no source {analytic.DEFAULT_METHOD!r} in {names}")
    return analytic.DEFAULT_METHOD


def conclusion(ds: xr.Dataset, source: str, *, max_load: float = MAX_LOAD) -> str:
    """One paragraph: does ``source`` meet the issue-14 targets on this grid?"""
    f = fidelity(ds, max_load=max_load).sel(source=source)
    parts, missed = [], []
    for stat, target in TARGETS.items():
        share = float(f.within.sel(statistic=stat))
        parts.append(f"{_within(stat)} at {share:.1%} "
                     f"(target {target:.0%}, {int(f.judged.sel(statistic=stat))} points)")
        if not share >= target:
            missed.append(STAT_LABELS[stat])
    verdict = "meets every target" if not missed else f"misses {', '.join(missed)}"
    return (f"**{source} {verdict}** on {int(f.n_points)} points with load <= "
            f"{max_load:g}: " + "; ".join(parts) + ".")


def dump_reference(doc: dict[str, Any]) -> str:
    """Strict JSON, one grid point per line (readable diffs, a third of indented size)."""
    from fileio import json_safe

    head = {k: v for k, v in doc.items() if k != "points"}
    body = ",\n".join(json.dumps(json_safe(r)) for r in doc["points"])
    return json.dumps(json_safe(head), indent=1)[:-2] + ',\n "points": [\n' + body + "\n]}\n"


def write_grid_outputs(ds: xr.Dataset, doc: dict[str, Any],
                       folder: str | Path) -> dict[str, Path]:
    """``dataset.nc``, ``simulation.json`` (reusable as ``validation.grid.reference``) and
    ``fidelity.md`` (:func:`report_body` under a title), each written atomically."""
    from fileio import atomic_write, atomic_write_text

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"dataset": out / "dataset.nc", "simulation": out / "simulation.json",
             "report": out / "fidelity.md"}
    atomic_write(paths["dataset"], ds.to_netcdf)
    atomic_write_text(paths["simulation"], dump_reference(doc))
    atomic_write_text(paths["report"], "# Fidelity of the closed forms (seed model)\n\n"
                      + report_body(ds))
    return paths


__all__ = ["GridAxes", "GridPoint", "MAX_LOAD", "TARGETS", "TOLERANCES", "breakdown_table",
           "closed_forms",
           "conclusion", "default_source", "dump_reference", "fidelity",
           "fidelity_table", "grid_model", "grid_points", "point_config", "price_grid",
           "read_reference", "reference_document", "report_body", "requests_per_replication",
           "simulate_grid", "split", "write_grid_outputs"]
