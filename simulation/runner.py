"""Entry points: synthetic runs with replications, traces, the seed API, comparisons."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from spec import (
    SLO,
    BatchedColocated,
    BatchedDisaggregated,
    Cluster,
    DisaggregatedCluster,
    MonolithicCluster,
    SimConfig,
    TokenDist,
    Workload,
    config_from_mapping,
)

from .fast import prepare, simulate_disagg_fast, simulate_mono_fast
from .metrics import (
    RequestRecords,
    build_records,
    confidence_interval,
    offered_load,
    quantile_key,
    summarise,
)
from .model import simulate_disagg, simulate_mono
from .requests import ClosedLoop, Requests, generate_requests, load_trace, spawn_seeds
from .stream import stream_batched_replication, stream_replication

#: ``simpy``: the general event-driven model; ``fast``: the exact FIFO recursion
#: (:mod:`simulation.fast`), the same numbers many times faster.
ENGINES: tuple[str, ...] = ("simpy", "fast")


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine = {engine!r}: must be one of {', '.join(ENGINES)}")


def run_requests(requests: Requests, cluster: Cluster, *, engine: str = "fast",
                 warmup_s: float = 0.0, progress: bool = False) -> RequestRecords:
    """Simulate one request stream on one cluster; per-request records.

    This is the one path every run takes: synthetic streams and traces alike.
    """
    _check_engine(engine)
    fast = engine == "fast"
    if fast:
        prepare(len(requests) * (1 if isinstance(cluster, MonolithicCluster) else 2))
    if isinstance(cluster, MonolithicCluster):
        times = simulate_mono_fast(requests, cluster) if fast else \
            simulate_mono(requests, cluster, progress=progress)
    elif isinstance(cluster, DisaggregatedCluster):
        times = simulate_disagg_fast(requests, cluster) if fast else \
            simulate_disagg(requests, cluster, progress=progress)
    else:
        raise ValueError(f"cluster = {cluster!r}: must be a MonolithicCluster or "
                         "DisaggregatedCluster")
    return build_records(requests, cluster, times, warmup_s)


@dataclass
class SimulationResult:
    """Results of one architecture over one or more replications.

    Attributes
    ----------
    cluster : MonolithicCluster or DisaggregatedCluster
    replications : list of dict
        One summary per replication (keys like ``mean_ttft_s``, ``p99_ttft_s``).
    records : list of RequestRecords
        Per-request results per replication (empty if not kept).
    confidence : float
        Level of the intervals in :attr:`ci` (Student t across replications).
    """

    cluster: Cluster
    replications: list[dict[str, float]]
    records: list[RequestRecords] = field(default_factory=list, repr=False)
    confidence: float = 0.95
    engine: str = "fast"
    seed: int | None = None

    @property
    def mode(self) -> str:
        return self.cluster.mode

    @property
    def summary(self) -> dict[str, float]:
        """Mean over replications of every statistic."""
        keys = self.replications[0].keys()
        return {k: float(np.mean([r[k] for r in self.replications])) for k in keys}

    @property
    def ci(self) -> dict[str, tuple[float, float]]:
        """Confidence interval of each statistic's mean across replications."""
        keys = self.replications[0].keys()
        return {k: confidence_interval(np.array([r[k] for r in self.replications]),
                                       self.confidence) for k in keys}

    @property
    def stats(self) -> dict[str, float]:
        """Summary plus ``<key>_ci_low`` / ``<key>_ci_high`` when replications > 1."""
        out = dict(self.summary)
        out["stable"] = bool(out["stable"] >= 1.0)
        out["replications"] = len(self.replications)
        if len(self.replications) > 1:
            for k, (lo, hi) in self.ci.items():
                if k not in ("stable", "n_requests", "n_measured"):
                    out[f"{k}_ci_low"], out[f"{k}_ci_high"] = lo, hi
        return out

    def quantile(self, q: float | Sequence[float], stat: str = "ttft_s") -> float | np.ndarray:
        """Any quantile of a per-request column, averaged over replications.

        Needs the per-request records (``keep_requests=True``, the default).
        """
        if not self.records:
            raise ValueError("quantile: per-request records were not kept "
                             "(run with keep_requests=True)")
        qs = np.asarray(q, dtype=float)
        if np.any(~((qs > 0) & (qs < 1))):
            raise ValueError(f"q = {q!r}: must be in (0, 1)")
        per_rep = [np.quantile(getattr(r.select(r.measured), stat), qs) for r in self.records]
        out = np.mean(per_rep, axis=0)
        return float(out) if np.ndim(out) == 0 else out

    def ttft_samples(self, replication: int = 0) -> np.ndarray:
        """Raw TTFT of the measured requests of one replication (seconds)."""
        r = self.records[replication]
        return r.ttft_s[r.measured]

    def to_xarray(self):
        """Dataset with ``value(replication, statistic)``, its mean and CI bounds."""
        import xarray as xr

        keys = list(self.replications[0])
        values = np.array([[r[k] for k in keys] for r in self.replications])
        ci = self.ci
        ds = xr.Dataset(
            {
                "value": (("replication", "statistic"), values),
                "mean": ("statistic", values.mean(axis=0)),
                "ci_low": ("statistic", np.array([ci[k][0] for k in keys])),
                "ci_high": ("statistic", np.array([ci[k][1] for k in keys])),
            },
            coords={"replication": np.arange(len(values)), "statistic": keys},
            attrs={"mode": self.mode, "engine": self.engine, "confidence": self.confidence,
                   "cluster": repr(self.cluster), "random_seed": -1 if self.seed is None
                   else self.seed},
        )
        return ds


#: Peak bytes a simulated request costs, by the path a run takes, as ``(fixed, per
#: cluster held)``; measured with tracemalloc on 1 to 4 million requests (numpy 2.4; a
#: test re-measures them). ``streamed``: the compiled seed engine without
#: ``keep_requests`` keeps only TTFT, waits and E2E for quantiles; ``records``: a run
#: that builds per-request records (``keep_requests`` keeps them for every
#: replication); ``batched_streamed``: the compiled batched engine without
#: ``keep_requests`` keeps the measured requests' five latencies (40 bytes) while the
#: requests in flight live in its ring (see :data:`RING_BYTES_PER_SLOT`);
#: ``batched``: a batched run with per-request records.
BYTES_PER_REQUEST: dict[str, tuple[float, float]] = {
    "streamed": (48.0, 32.0), "records": (65.0, 105.0), "batched_streamed": (50.0, 0.0),
    "batched": (50.0, 120.0)}
#: A run may plan on this share of the memory available when it starts.
MEMORY_SHARE = 0.8


def available_memory_bytes() -> float:
    """``MemAvailable`` of ``/proc/meminfo`` (Linux), else free pages x page size."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _expected_requests(config: SimConfig) -> float:
    """Requests one replication of an open loop draws on average: ``rate x sim_seconds``."""
    return config.workload.arrival_rate_per_s * config.sim_seconds


def _memory_path(config: SimConfig, *, keep_requests: bool, engine: str) -> str:
    """Which of :data:`BYTES_PER_REQUEST` a run takes."""
    if config.serving == "batched":
        closed = config.workload.arrival.process == "closed"
        return "batched_streamed" if engine == "fast" and not keep_requests and not closed \
            else "batched"
    return "streamed" if engine == "fast" and not keep_requests else "records"


def memory_estimate_bytes(config: SimConfig, clusters: int, *, keep_requests: bool,
                          engine: str) -> float:
    """Peak memory of a run: ``requests x (fixed + per cluster x clusters held)`` with
    :data:`BYTES_PER_REQUEST`; clusters held times the replications with
    ``keep_requests``. A closed loop's rate is an output of the run, not known before
    it: 0 (not estimated)."""
    if config.workload.arrival.process == "closed":
        return 0.0
    fixed, per = BYTES_PER_REQUEST[_memory_path(config, keep_requests=keep_requests,
                                                engine=engine)]
    held = clusters * (config.replications if keep_requests else 1)
    return _expected_requests(config) * (fixed + per * held)


def check_memory(config: SimConfig, clusters: int, *, keep_requests: bool,
                 engine: str) -> None:
    """Refuse, before any work, a run that would not fit in memory (never the OOM killer)."""
    need = memory_estimate_bytes(config, clusters, keep_requests=keep_requests, engine=engine)
    have = available_memory_bytes()
    if need > MEMORY_SHARE * have:
        if _memory_path(config, keep_requests=keep_requests, engine=engine) == "records":
            fixed, per = BYTES_PER_REQUEST["streamed"]
            hint = ("shorten sim_seconds, or stream it (engine fast, no per-request records: "
                    "no dump_ttft, or keep_requests=False in Python; "
                    f"{fixed + per * clusters:.0f} bytes a request)")
        else:
            hint = "shorten sim_seconds or lower the rate"
        raise ValueError(
            f"sim_seconds = {config.sim_seconds:g}: about {_expected_requests(config):,.0f} "
            f"requests a replication need about {need / 2**30:,.1f} GiB, more than "
            f"{MEMORY_SHARE:.0%} of the {have / 2**30:,.1f} GiB available; {hint}")


def _auto_progress(expected_requests: float) -> bool:
    return sys.stderr.isatty() and expected_requests > 100_000


def _batched_engine(engine: str, closed: bool = False):
    """The batched engine to run and its name: the compiled one for ``fast`` (open loops),
    else the SimPy model (which alone runs closed loops)."""
    if engine == "fast" and not closed:
        from .batched_fast import simulate_batched_fast

        return simulate_batched_fast, "fast"
    from .batched import simulate_batched

    return simulate_batched, "simpy"


def _run_batched(config: SimConfig, clusters: Sequence[Cluster], *, keep_requests: bool,
                 engine: str) -> list[SimulationResult]:
    """The batched serving model on each replication's stream, every cluster on the same
    requests (common random numbers)."""
    from .batched_metrics import summarise_batched

    window = (config.warmup_seconds, config.sim_seconds)
    closed = config.workload.arrival.process == "closed"
    simulate_batched, used = _batched_engine(engine, closed)
    results = [SimulationResult(c, [], [], engine=used, seed=config.random_seed)
               for c in clusters]
    for ss in spawn_seeds(config.random_seed, config.replications):
        if used == "fast" and not keep_requests:  # bounded memory, same numbers
            summaries = stream_batched_replication(config.workload, config.sim_seconds, ss,
                                                   clusters, window, config.quantiles,
                                                   config.slo)
            for res, summary in zip(results, summaries, strict=True):
                res.replications.append(summary)
            continue
        requests = None if closed else generate_requests(config.workload, config.sim_seconds,
                                                         ss)
        for res in results:
            source = ClosedLoop(config.workload, config.sim_seconds, ss) if closed else requests
            times, eng = simulate_batched(source, res.cluster, window)
            res.replications.append(summarise_batched(times, eng, window, config.quantiles,
                                                       config.slo, closed_loop=closed))
            if keep_requests:
                res.records.append(times)
    return results


def _run_replicated(config: SimConfig, clusters: Sequence[Cluster], *, keep_requests: bool,
                    engine: str, progress: bool | None) -> list[SimulationResult]:
    check_memory(config, len(clusters), keep_requests=keep_requests, engine=engine)
    if config.serving == "batched":
        return _run_batched(config, clusters, keep_requests=keep_requests, engine=engine)
    w = config.workload
    load_inputs = (w.prompt_tokens.mean_tokens(), w.output_tokens.mean_tokens())
    if progress is None:
        progress = _auto_progress(_expected_requests(config))
    results = [SimulationResult(c, [], [], engine=engine, seed=config.random_seed)
               for c in clusters]
    loads = [offered_load(r.cluster, w.arrival_rate_per_s, *load_inputs) for r in results]
    if engine == "fast":  # passes through the recursion: one per pool, all replications
        prepare(_expected_requests(config) * config.replications
                * sum(len(load) for load in loads))
    for ss in spawn_seeds(config.random_seed, config.replications):
        if engine == "fast" and not keep_requests:  # bounded memory, same numbers
            summaries = stream_replication(w, config.sim_seconds, ss,
                                           [r.cluster for r in results],
                                           config.warmup_seconds, config.quantiles, loads)
            for res, summary in zip(results, summaries, strict=True):
                res.replications.append(summary)
            continue
        requests = generate_requests(w, config.sim_seconds, ss)
        for res, load in zip(results, loads, strict=True):
            rec = run_requests(requests, res.cluster, engine=engine,
                               warmup_s=config.warmup_seconds, progress=progress)
            res.replications.append(summarise(rec, res.cluster, (config.warmup_seconds,
                                                                 config.sim_seconds),
                                              config.quantiles, load))
            if keep_requests:
                res.records.append(rec)
    return results


def simulate(config: SimConfig, cluster: Cluster | None = None, *, keep_requests: bool = True,
             engine: str = "fast", progress: bool | None = None) -> SimulationResult:
    """Simulate one architecture with ``config.replications`` independent replications.

    Parameters
    ----------
    config : SimConfig
        ``mode`` picks the cluster (``mono`` or ``disagg``) unless ``cluster`` is given.
    cluster : MonolithicCluster or DisaggregatedCluster, optional
    keep_requests : bool
        Keep per-request records (needed for :meth:`SimulationResult.quantile`).
    progress : bool, optional
        Progress bar; by default only on a terminal for runs past 100k requests.
    """
    _check_engine(engine)
    if cluster is None:
        if config.mode == "both":
            raise ValueError("mode = 'both': use simulation.compare(config) for both "
                             "architectures, or pass cluster=")
        cluster = config.clusters()[0]
    return _run_replicated(config, [cluster], keep_requests=keep_requests, engine=engine,
                           progress=progress)[0]


@dataclass
class Comparison:
    """Both architectures on the very same requests (common random numbers)."""

    mono: SimulationResult
    disagg: SimulationResult

    def relative_difference(self) -> dict[str, float]:
        """``(disagg - mono) / mono`` for every statistic the two share (mean over reps)."""
        a, b = self.mono.summary, self.disagg.summary
        out = {}
        for k in a.keys() & b.keys():
            if k in ("stable",) or not a[k] or math.isnan(a[k]):
                continue
            out[k] = (b[k] - a[k]) / a[k]
        return dict(sorted(out.items()))


def compare(config: SimConfig, *, keep_requests: bool = True, engine: str = "fast",
            progress: bool | None = None) -> Comparison:
    """The seed's *compare*: monolithic (batched: colocated) and disaggregated on the same
    request streams."""
    _check_engine(engine)
    both = config if config.mode == "both" else replace(config, mode="both")
    mono, disagg = _run_replicated(config, both.clusters(), keep_requests=keep_requests,
                                   engine=engine, progress=progress)
    return Comparison(mono, disagg)


def simulate_trace(trace: Requests | str | Path, cluster: Cluster, *, warmup_s: float = 0.0,
                   quantiles: Sequence[float] = (0.5, 0.9, 0.99),
                   engine: str = "fast", slo: SLO | None = None) -> SimulationResult:
    """Simulate a given list of requests (a :class:`Requests` or a CSV / JSON file).

    The measurement window is ``[warmup_s, last arrival)``. For the seed model the
    offered load is estimated from the trace itself (rate = measured requests per second
    of the window, mean tokens from the trace); a batched cluster runs the engine asked for and
    reports SLO attainment against ``slo`` (:class:`spec.SLO`'s defaults if not given).
    """
    _check_engine(engine)
    requests = trace if isinstance(trace, Requests) else load_trace(trace)
    if len(requests) == 0:
        raise ValueError("trace: no requests")
    last = float(requests.arrival_s[-1])
    if not math.isfinite(warmup_s) or not (warmup_s == 0.0 or 0.0 <= warmup_s < last):
        raise ValueError(f"warmup_seconds = {warmup_s!r}: must be in [0, the trace's last "
                         f"arrival = {last!r})")
    # the window [warmup, horizon) holds the last arrival too (all of a trace at t = 0 is
    # one measurable burst)
    horizon = math.nextafter(last, math.inf)
    if isinstance(cluster, BatchedColocated | BatchedDisaggregated):
        from .batched_metrics import summarise_batched

        simulate_batched, used = _batched_engine(engine)
        times, eng = simulate_batched(requests, cluster, (warmup_s, horizon))
        summary = summarise_batched(times, eng, (warmup_s, horizon), quantiles, slo or SLO())
        return SimulationResult(cluster, [summary], [times], engine=used)
    rec = run_requests(requests, cluster, engine=engine, warmup_s=warmup_s)
    n_window = np.count_nonzero(requests.arrival_s >= warmup_s)
    rate = n_window / (last - warmup_s) if last > warmup_s else math.nan
    load = offered_load(cluster, rate, float(requests.prompt_tokens.mean()),
                        float(requests.output_tokens.mean()))
    summary = summarise(rec, cluster, (warmup_s, horizon), quantiles, load)
    return SimulationResult(cluster, [summary], [rec], engine=engine)


def run_simulation(mode: str = "mono", sim_seconds: float = 3600.0,
                   warmup_seconds: float = 300.0, random_seed: int = 42,
                   arrival_rate_per_s: float = 2.0,
                   prompt_lognormal: tuple[float, float, int] = (6.0, 0.9, 8),
                   output_lognormal: tuple[float, float, int] = (6.0, 1.1, 16),
                   mono_params: tuple[int, float, float] = (4, 8000.0, 2000.0),
                   disagg_params: tuple[int, int, float, float] = (2, 2, 8000.0, 2000.0),
                   ) -> tuple[RequestRecords | dict, dict]:
    """The seed documents' API: one replication, ``(metrics, stats)``.

    Parameters
    ----------
    mode : {"mono", "disagg", "both"}
    prompt_lognormal, output_lognormal : (mu, sigma, min)
        ``log``-mode token laws.
    mono_params : (num_gpus, prefill_tokens_per_s, decode_tokens_per_s)
    disagg_params : (prefill_gpus, decode_gpus, prefill_tokens_per_s, decode_tokens_per_s)

    Returns
    -------
    metrics : RequestRecords
        Per-request results of the measured requests (for ``both``: a dict by mode).
    stats : dict
        ``mean_ttft_s``, ``p50_ttft_s``, ``p90_ttft_s``, ``p99_ttft_s`` and the rest of
        the summary (for ``both``: a dict by mode plus ``relative_difference``).

    Examples
    --------
    >>> metrics, stats = run_simulation("mono", sim_seconds=200, warmup_seconds=20)
    >>> stats["mean_ttft_s"] < stats["p99_ttft_s"]
    True
    """
    for name, t, n in (("prompt_lognormal", prompt_lognormal, 3),
                       ("output_lognormal", output_lognormal, 3),
                       ("mono_params", mono_params, 3), ("disagg_params", disagg_params, 4)):
        if len(tuple(t)) != n:
            raise ValueError(f"{name} = {t!r}: must have {n} values")
    p_mu, p_sigma, p_min = prompt_lognormal
    o_mu, o_sigma, o_min = output_lognormal
    config = SimConfig(
        mode=mode, sim_seconds=sim_seconds, warmup_seconds=warmup_seconds,
        random_seed=random_seed,
        workload=Workload(arrival_rate_per_s,
                          TokenDist.lognormal(p_mu, p_sigma, p_min, name="prompt_tokens"),
                          TokenDist.lognormal(o_mu, o_sigma, o_min, name="output_tokens")),
        cluster_mono=MonolithicCluster(*mono_params),
        cluster_disagg=DisaggregatedCluster(*disagg_params),
    )
    if mode == "both":
        cmp = compare(config)
        metrics = {r.mode: r.records[0].select(r.records[0].measured)
                   for r in (cmp.mono, cmp.disagg)}
        stats = {"mono": cmp.mono.stats, "disagg": cmp.disagg.stats,
                 "relative_difference": cmp.relative_difference()}
        return metrics, stats
    res = simulate(config)
    rec = res.records[0]
    return rec.select(rec.measured), res.stats


def simulate_mapping(data: dict) -> SimulationResult | Comparison:
    """Run a seed-format mapping (``mode`` mono, disagg or both)."""
    config = config_from_mapping(data)
    return compare(config) if config.mode == "both" else simulate(config)


__all__ = ["Comparison", "SimulationResult", "compare", "quantile_key", "run_requests",
           "run_simulation", "simulate", "simulate_mapping", "simulate_trace"]
