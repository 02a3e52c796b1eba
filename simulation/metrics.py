"""Per-request records and the statistics computed from them.

One flat record per request (as Ciw keeps one per customer); every statistic of a run is
a pure function of the records, the cluster and the measurement window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from spec import Cluster, DisaggregatedCluster, MonolithicCluster

from .fast import compiled_summary
from .model import StageTimes
from .requests import PARALLEL_FROM, Requests, background

#: Units and meanings of the per-request columns (used for xarray attrs).
COLUMNS: dict[str, tuple[str, str]] = {
    "arrival_s": ("s", "arrival time"),
    "prompt_tokens": ("tokens", "prompt length"),
    "output_tokens": ("tokens", "output length"),
    "prefill_wait_s": ("s", "wait for the first pool (mono: a GPU; disagg: a prefill GPU)"),
    "prefill_s": ("s", "prefill time"),
    "transfer_s": ("s", "KV-cache transfer time"),
    "decode_wait_s": ("s", "wait for a decode GPU (0 for mono)"),
    "decode_s": ("s", "whole decode time"),
    "ttft_s": ("s", "time to first token"),
    "e2e_s": ("s", "end-to-end latency"),
}


def quantile_key(q: float, stat: str) -> str:
    """``p99_ttft_s`` for ``q = 0.99``; ``p99.9_ttft_s`` for ``0.999``."""
    return f"p{q * 100:g}_{stat}"


@dataclass(frozen=True)
class RequestRecords:
    """Per-request results of one run (all requests, measured or not).

    ``TTFT = prefill_wait + prefill + transfer + decode_wait + 1 / decode_rate``;
    ``measured`` marks requests that arrived at or after the warm-up.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    prefill_wait_s: np.ndarray
    prefill_s: np.ndarray
    transfer_s: np.ndarray
    decode_wait_s: np.ndarray
    decode_s: np.ndarray
    ttft_s: np.ndarray
    e2e_s: np.ndarray
    prefill_start_s: np.ndarray
    decode_start_s: np.ndarray
    measured: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)

    def select(self, mask: np.ndarray) -> RequestRecords:
        """The records where ``mask`` holds (``records.select(records.measured)``)."""
        return RequestRecords(*(getattr(self, f.name)[mask] for f in fields(self)))

    def to_xarray(self):
        """An ``xarray.Dataset`` over dimension ``request`` with units in attrs."""
        import xarray as xr

        data = {}
        for name, (units, long_name) in COLUMNS.items():
            data[name] = ("request", getattr(self, name), {"units": units,
                                                          "long_name": long_name})
        data["measured"] = ("request", self.measured, {"long_name": "arrived after warm-up"})
        return xr.Dataset(data)


def build_records(requests: Requests, cluster: Cluster, times: StageTimes,
                  warmup_s: float) -> RequestRecords:
    """Per-request waits, services, TTFT and end-to-end latency from stage entry times."""
    arr = requests.arrival_s
    first_token_s = 1.0 / cluster.decode_tokens_per_s
    prefill = requests.prompt_tokens / cluster.prefill_tokens_per_s
    decode = requests.output_tokens / cluster.decode_tokens_per_s
    p_wait = times.prefill_start_s - arr
    if isinstance(cluster, MonolithicCluster):
        transfer = np.zeros_like(arr)
        d_wait = np.zeros_like(arr)
        d_start = times.prefill_start_s + prefill
        # the sums below without the zero terms: adding 0.0 changes no bit
        ttft = p_wait + prefill + first_token_s
        e2e = p_wait + prefill + decode
    else:
        transfer = requests.prompt_tokens * cluster.kv_transfer_s_per_token
        d_wait = times.decode_start_s - times.decode_ready_s
        d_start = times.decode_start_s
        ttft = p_wait + prefill + transfer + d_wait + first_token_s
        e2e = p_wait + prefill + transfer + d_wait + decode
    return RequestRecords(arr, requests.prompt_tokens, requests.output_tokens, p_wait, prefill,
                          transfer, d_wait, decode, ttft, e2e, times.prefill_start_s, d_start,
                          arr >= warmup_s)


def pool_names(cluster: Cluster) -> tuple[str, ...]:
    """``("gpu",)`` for a monolithic cluster, ``("prefill", "decode")`` for disaggregated."""
    return ("gpu",) if isinstance(cluster, MonolithicCluster) else ("prefill", "decode")


def offered_load(cluster: Cluster, rate_per_s: float, mean_prompt_tokens: float,
                 mean_output_tokens: float) -> dict[str, float]:
    """Offered load per pool, ``rho = lam E[S] / c``.

    Monolithic: ``E[S] = E[P]/r_p + E[O]/r_d`` on ``num_gpus``. Disaggregated:
    ``E[P]/r_p`` on ``prefill_gpus`` and ``E[O]/r_d`` on ``decode_gpus`` (the KV transfer
    holds no GPU).
    """
    es_p = mean_prompt_tokens / cluster.prefill_tokens_per_s
    es_d = mean_output_tokens / cluster.decode_tokens_per_s
    if isinstance(cluster, MonolithicCluster):
        return {"gpu": rate_per_s * (es_p + es_d) / cluster.num_gpus}
    assert isinstance(cluster, DisaggregatedCluster)
    return {"prefill": rate_per_s * es_p / cluster.prefill_gpus,
            "decode": rate_per_s * es_d / cluster.decode_gpus}


def _overlap(start: np.ndarray, end: np.ndarray, lo: float, hi: float) -> float:
    """Total length of ``[start_i, end_i)`` inside ``[lo, hi)``."""
    return float(np.clip(np.minimum(end, hi) - np.maximum(start, lo), 0.0, None).sum())


def _pool_intervals(rec: RequestRecords, cluster: Cluster):
    """Per pool: servers, waiting intervals and busy intervals."""
    if isinstance(cluster, MonolithicCluster):
        end = rec.prefill_start_s + rec.prefill_s + rec.decode_s
        return {"gpu": (cluster.num_gpus, rec.arrival_s, rec.prefill_start_s,
                        rec.prefill_start_s, end)}
    ready = rec.decode_start_s - rec.decode_wait_s
    return {
        "prefill": (cluster.prefill_gpus, rec.arrival_s, rec.prefill_start_s,
                    rec.prefill_start_s, rec.prefill_start_s + rec.prefill_s),
        "decode": (cluster.decode_gpus, ready, rec.decode_start_s, rec.decode_start_s,
                   rec.decode_start_s + rec.decode_s),
    }


class Summary:
    """Summary statistics built batch by batch (a whole run is one batch).

    TTFT, wait and latency statistics are over measured requests (arrival after the
    warm-up). Utilisation, time-average queue length and throughput are time averages over
    the window ``[warmup, sim_seconds)``, counting every request present in it:
    ``utilisation = busy GPU-seconds / (c * window)``,
    ``mean_queue_len = waiting request-seconds / window``,
    ``throughput_rps = requests finishing in the window / window``.
    ``mean_sq_service_<pool>_s2`` is the measured requests' mean squared hold time of
    each pool (mono: ``(prefill + decode)^2``; disagg: ``prefill^2``, ``decode^2``): with
    ``mean_prefill_s`` and ``mean_decode_s`` it lets a replication's sampled service
    moments serve as control variates (:mod:`validate.fidelity`).

    Only what the statistics need is kept: the measured requests' TTFT, waits and
    end-to-end latency (for quantiles, 32 bytes a request) and running sums.
    """

    KEPT = ("ttft_s", "prefill_wait_s", "decode_wait_s", "e2e_s")
    SUMMED = ("prefill_s", "transfer_s", "decode_s")

    def __init__(self, cluster: Cluster, window_s: tuple[float, float],
                 quantiles: Sequence[float], load: dict[str, float]) -> None:
        self.cluster, self.window, self.load = cluster, window_s, load
        self.quantiles = sorted(set(quantiles) | {0.5, 0.9, 0.99})
        self.n_requests = 0
        self.mono = isinstance(cluster, MonolithicCluster)  # no decode queue to keep
        self.kept: dict[str, list[np.ndarray]] = {
            k: [] for k in self.KEPT if not (self.mono and k == "decode_wait_s")}
        self.sums = dict.fromkeys(self.SUMMED, 0.0)
        self.finished = 0
        self.busy = dict.fromkeys(pool_names(cluster), 0.0)
        self.waiting = dict.fromkeys(pool_names(cluster), 0.0)
        self.hold_sq = dict.fromkeys(pool_names(cluster), 0.0)

    def add(self, rec: RequestRecords) -> Summary:
        """Account for a batch of requests whose every stage is known."""
        lo, hi = self.window
        self.n_requests += len(rec)
        everyone = bool(rec.measured.all())
        for name in self.kept:  # copies: result() partitions the kept columns in place
            col = getattr(rec, name)
            self.kept[name].append(col.copy() if everyone else col[rec.measured])
        for name in self.SUMMED:
            col = getattr(rec, name)
            self.sums[name] += float((col if everyone else col[rec.measured]).sum())
        holds = ((rec.prefill_s + rec.decode_s,) if self.mono
                 else (rec.prefill_s, rec.decode_s))
        for pool, hold in zip(pool_names(self.cluster), holds, strict=True):
            h = hold if everyone else hold[rec.measured]
            self.hold_sq[pool] += float(np.dot(h, h))
        finish = rec.arrival_s + rec.e2e_s
        self.finished += int(np.count_nonzero((finish >= lo) & (finish < hi)))
        for pool, (_, w0, w1, b0, b1) in _pool_intervals(rec, self.cluster).items():
            self.busy[pool] += _overlap(b0, b1, lo, hi)
            self.waiting[pool] += _overlap(w0, w1, lo, hi)
        return self

    def add_times(self, requests: Requests, times: StageTimes) -> Summary:
        """:meth:`add` for requests and their stage entry times, measured from the
        window's start. With the compiled engine loaded this is one compiled pass that
        never builds the record columns (:func:`simulation.fast.compiled_summary`);
        otherwise it is ``add(build_records(...))``. Same statistics either way."""
        loop = compiled_summary()
        if loop is None:
            return self.add(build_records(requests, self.cluster, times, self.window[0]))
        c = self.cluster
        n = len(requests)
        out = {k: np.empty(n if k in self.kept else 0) for k in self.KEPT}
        acc = np.zeros(10)
        kv = 0.0 if self.mono else c.kv_transfer_s_per_token
        m = loop(requests.arrival_s, requests.prompt_tokens, requests.output_tokens,
                 times.prefill_start_s, times.decode_ready_s, times.decode_start_s, self.mono,
                 c.prefill_tokens_per_s, c.decode_tokens_per_s, kv, self.window[0],
                 self.window[1], out["ttft_s"], out["prefill_wait_s"], out["decode_wait_s"],
                 out["e2e_s"], acc)
        self.n_requests += n
        for name in self.kept:
            self.kept[name].append(out[name][:m].copy() if m < n else out[name])
        for name, value in zip(self.SUMMED, acc[:3], strict=True):
            self.sums[name] += float(value)
        self.finished += int(acc[3])
        for k, pool in enumerate(pool_names(c)):
            self.busy[pool] += float(acc[4 + 2 * k])
            self.waiting[pool] += float(acc[5 + 2 * k])
            self.hold_sq[pool] += float(acc[8 + k])
        return self

    def _column(self, name: str) -> np.ndarray:
        """One kept column as one array; its pieces are released (memory: one copy)."""
        parts = self.kept[name]
        self.kept[name] = []
        return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else \
            np.empty(0)

    def result(self) -> dict[str, float]:
        """The statistics (call once: the kept columns are consumed)."""
        lo, hi = self.window
        span = hi - lo
        n = sum(len(p) for p in self.kept["ttft_s"])
        out: dict[str, float] = {"n_requests": float(self.n_requests), "n_measured": float(n)}
        nan = math.nan
        # TTFT on the worker thread, the other columns here (sorts release the GIL)
        ttft = background().submit(_column_stats, "ttft_s", self._column("ttft_s"),
                                   self.quantiles, True) if n >= PARALLEL_FROM else None
        if ttft is None:
            out.update(_column_stats("ttft_s", self._column("ttft_s"), self.quantiles, True))
        rest: dict[str, float] = {}
        for name in ("prefill_wait_s", "decode_wait_s"):
            if name == "decode_wait_s" and self.mono:
                zero = 0.0 if n else nan  # no decode queue: exactly zero, no sort needed
                rest.update({"mean_decode_wait_s": zero, "p50_decode_wait_s": zero,
                             "p99_decode_wait_s": zero, "prob_wait_decode": zero})
                continue
            rest.update(_column_stats(name, self._column(name), (0.5, 0.99)))
        rest.update(_column_stats("e2e_s", self._column("e2e_s"), (0.5, 0.99)))
        if ttft is not None:
            out.update(ttft.result())
        out.update(rest)
        out["mean_wait_s"] = out["mean_prefill_wait_s"] + out["mean_decode_wait_s"]
        for name in self.SUMMED:
            out[f"mean_{name}"] = self.sums[name] / n if n else nan
        out["throughput_rps"] = self.finished / span
        servers = dict(zip(pool_names(self.cluster), _servers(self.cluster), strict=True))
        for pool in pool_names(self.cluster):
            out[f"utilisation_{pool}"] = self.busy[pool] / (servers[pool] * span)
            out[f"mean_queue_len_{pool}"] = self.waiting[pool] / span
            out[f"offered_load_{pool}"] = float(self.load[pool])
            out[f"mean_sq_service_{pool}_s2"] = self.hold_sq[pool] / n if n else nan
        out["stable"] = float(all(v < 1.0 for v in self.load.values()))
        return out


def _column_stats(name: str, values: np.ndarray, quantiles: Sequence[float],
                  spread: bool = False) -> dict[str, float]:
    """Mean and quantiles (numpy's linear interpolation) of one measured column; with
    ``spread`` also its sample standard deviation and maximum; for a wait, the share of
    requests that waited (``prob_wait_<pool>``). ``values`` is consumed (partitioned in
    place); everything that depends on its order is computed first."""
    n = len(values)
    nan = math.nan
    out = {f"mean_{name}": float(values.mean()) if n else nan}
    if spread:
        std = float(values.std(ddof=1)) if n > 1 else nan
        top = float(values.max()) if n else nan
    if name.endswith("_wait_s"):
        waited = float(np.count_nonzero(values > 0)) / n if n else nan
    qv = np.quantile(values, quantiles, overwrite_input=True) if n else [nan] * len(quantiles)
    for q, v in zip(quantiles, qv, strict=True):
        out[quantile_key(q, name)] = float(v)
    if spread:
        out.update({f"std_{name}": std, f"max_{name}": top})
    if name.endswith("_wait_s"):
        out[f"prob_wait_{name.split('_')[0]}"] = waited
    return out


def _servers(cluster: Cluster) -> tuple[int, ...]:
    if isinstance(cluster, MonolithicCluster):
        return (cluster.num_gpus,)
    return (cluster.prefill_gpus, cluster.decode_gpus)


def summarise(rec: RequestRecords, cluster: Cluster, window_s: tuple[float, float],
              quantiles: Sequence[float], load: dict[str, float]) -> dict[str, float]:
    """Summary statistics of one run (see :class:`Summary` for what each one means)."""
    return Summary(cluster, window_s, quantiles, load).add(rec).result()


def confidence_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of independent replications.

    ``mean +- t_{(1+confidence)/2, R-1} * s / sqrt(R)``; ``(nan, nan)`` for one replication.
    """
    x = np.asarray(samples, dtype=float)
    r = len(x)
    mean = float(x.mean())
    if r < 2 or not np.all(np.isfinite(x)):
        return (math.nan, math.nan)
    from scipy.special import stdtrit  # Student t quantile; scipy.stats costs 1 s to import

    half = float(stdtrit(r - 1, 0.5 + confidence / 2.0) * x.std(ddof=1) / math.sqrt(r))
    return (mean - half, mean + half)


def control_variate_interval(samples: np.ndarray, controls: np.ndarray,
                             control_means: np.ndarray, confidence: float = 0.95
                             ) -> tuple[float, float, float]:
    r"""Control-variate estimate of the mean of replications, with its interval.

    Regress each replication's output on its controls' deviations from their known
    means, :math:`Y_r = \beta_0 + \beta^T (C_r - \mu_C) + \varepsilon_r`, by least
    squares; :math:`\hat\beta_0` estimates :math:`E[Y]` and its interval is
    :math:`\hat\beta_0 \pm t_{(1+\text{confidence})/2,\,R-q-1}\,\hat\sigma
    \sqrt{[(X^T X)^{-1}]_{00}}` with :math:`\hat\sigma^2 = RSS / (R - q - 1)` for ``q``
    controls (Lavenberg and Welch, "A perspective on the use of control variables to
    increase the efficiency of Monte Carlo simulations", Management Science 27, 1981;
    Nelson, "Control variate remedies", Operations Research 38, 1990). Exact under joint
    normality of ``(Y, C)`` across replications; with no controls it is
    :func:`confidence_interval`.

    Parameters
    ----------
    samples : array, shape (R,)
    controls : array, shape (R, q)
        Each replication's controls, whose expectations ``control_means`` are known.
    control_means : array, shape (q,)
    confidence : float

    Returns
    -------
    (estimate, low, high); ``(nan, nan, nan)`` unless ``R >= q + 2`` and all finite.
    """
    y = np.asarray(samples, dtype=float)
    c = np.asarray(controls, dtype=float).reshape(len(y), -1)
    r, q = c.shape
    if r < q + 2 or not (np.all(np.isfinite(y)) and np.all(np.isfinite(c))):
        return (math.nan, math.nan, math.nan)
    from scipy.special import stdtrit

    x = np.column_stack([np.ones(r), c - np.asarray(control_means, dtype=float)])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    dof = r - q - 1
    var0 = float(resid @ resid) / dof * float(np.linalg.pinv(x.T @ x)[0, 0])
    half = float(stdtrit(dof, 0.5 + confidence / 2.0)) * math.sqrt(var0)
    est = float(coef[0])
    return (est, est - half, est + half)
