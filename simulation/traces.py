"""Shipped request traces, time scaling, and fitting workload laws to a trace.

Shipped (``conf/traces/``, with their licences): the Azure LLM inference traces 2023
(Patel et al., Splitwise, ISCA 2024; CC-BY-4.0; processed copy from microsoft/vidur),
one hour each:

- ``azure_conv``: 19,366 conversation requests, 5.5 req/s;
- ``azure_code``: 8,819 coding-assistant requests, 2.6 req/s, very bursty.

A trace is used three ways: replayed as recorded (``trace=azure_conv``), time-scaled to a
target mean rate (``trace_rate_per_s=8``: every arrival time multiplied by the recorded
rate over the target), or as fitted laws (``workload=azure_conv``: the config group that
:func:`fit_workload` writes through ``scripts/fit_traces.py``).

The fits (:func:`fit_workload`): token counts as lognormals by maximum likelihood (the
mean and standard deviation of log tokens), goodness by the Kolmogorov-Smirnov distance;
arrivals as a Gamma renewal process with the gaps' coefficient of variation, and as a
two-state MMPP whose index of dispersion of counts (:func:`mmpp_idc`) is fitted to the
trace's over windows of 1 s to 10 min.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import numpy as np

from spec.system import ArrivalProcess

from .requests import Requests

#: Shipped traces by name: file under ``conf/traces``.
SHIPPED_TRACES = {
    "azure_conv": "azure_llm_2023/splitwise_conv.csv",
    "azure_code": "azure_llm_2023/splitwise_code.csv",
}
#: Windows (s) over which the index of dispersion of counts is fitted and reported.
IDC_WINDOWS_S = (1.0, 5.0, 15.0, 60.0, 300.0, 600.0)


def trace_path(name: str) -> Path:
    """The file of a shipped trace (``azure_conv``), else ``name`` as a path."""
    if name in SHIPPED_TRACES:
        return Path(str(resources.files("conf"))) / "traces" / SHIPPED_TRACES[name]
    return Path(name)


def mean_rate_per_s(arrival_s: np.ndarray) -> float:
    """Requests per second over the trace: ``(n - 1) / (last - first)``."""
    span = float(arrival_s[-1] - arrival_s[0]) if len(arrival_s) > 1 else 0.0
    if not span > 0.0:
        raise ValueError("trace: its arrivals span no time; a rate cannot be scaled")
    return (len(arrival_s) - 1) / span


def time_scaled(requests: Requests, rate_per_s: float) -> Requests:
    """The trace at mean rate ``rate_per_s``: arrival times multiplied by
    ``recorded rate / rate_per_s`` (gaps scale, their shape and order stay)."""
    if not (isinstance(rate_per_s, int | float) and math.isfinite(rate_per_s)
            and rate_per_s > 0):
        raise ValueError(f"trace_rate_per_s = {rate_per_s!r}: must be a finite number > 0")
    a = requests.arrival_s
    factor = mean_rate_per_s(a) / float(rate_per_s)
    return Requests(a * factor, requests.prompt_tokens, requests.output_tokens)


# --------------------------------------------------------------------------- fits
def lognormal_fit(tokens: np.ndarray) -> dict[str, float]:
    """Maximum-likelihood lognormal: ``mu`` and ``sigma`` of log tokens, and the
    Kolmogorov-Smirnov distance between the data and the fit."""
    from scipy import stats

    lx = np.log(np.asarray(tokens, float))
    mu, sigma = float(lx.mean()), float(lx.std())
    ks = float(stats.kstest(lx, "norm", args=(mu, sigma)).statistic)
    q = np.percentile(tokens, [50, 90, 99])
    z = stats.norm.ppf([0.5, 0.9, 0.99])
    fq = np.exp(mu + sigma * z)
    return {"mu": mu, "sigma": sigma, "ks": ks, "p50": float(q[0]), "p90": float(q[1]),
            "p99": float(q[2]), "fit_p50": float(fq[0]), "fit_p90": float(fq[1]),
            "fit_p99": float(fq[2])}


def idc(arrival_s: np.ndarray, window_s: float) -> float:
    """Index of dispersion of counts: variance over mean of the arrivals in consecutive
    windows of ``window_s`` (whole windows from the first arrival)."""
    a = np.asarray(arrival_s, float) - arrival_s[0]
    k = int(a[-1] // window_s)
    if k < 2:
        return math.nan
    counts = np.bincount((a[a < k * window_s] // window_s).astype(np.int64), minlength=k)
    return float(counts.var() / counts.mean())


def mmpp_idc(process: ArrivalProcess, rate_per_s: float, window_s: float) -> float:
    """Index of dispersion of counts of a two-state MMPP over a window ``t``
    (Heffes and Lucantoni, IEEE JSAC 1986, eq. 8 for two states)::

        IDC(t) = 1 + 2 (l1 - l2)^2 r12 r21 / ((r12 + r21)^3 l)
                     * (1 - (1 - exp(-(r12 + r21) t)) / ((r12 + r21) t))

    with state rates ``l1, l2``, switching rates ``r12`` (1 to 2) and ``r21``, and mean
    rate ``l``. A Poisson process has 1; a renewal process tends to ``cv^2``.
    """
    calm, burst, up, down = process.mmpp_rates(rate_per_s)
    s = up + down
    x = s * window_s
    return 1.0 + 2.0 * (burst - calm) ** 2 * up * down / (s**3 * rate_per_s) * (
        1.0 - (-math.expm1(-x)) / x)


def fit_mmpp(arrival_s: np.ndarray) -> tuple[ArrivalProcess, dict[float, tuple[float, float]]]:
    """A two-state MMPP whose IDC matches the trace's over :data:`IDC_WINDOWS_S` (least
    squares on log IDC over ``burst_ratio``, ``burst_fraction`` and ``burst_cycle_s``);
    returns it and ``{window: (trace IDC, fitted IDC)}``."""
    from scipy.optimize import least_squares

    rate = mean_rate_per_s(arrival_s)
    windows = [w for w in IDC_WINDOWS_S if not math.isnan(idc(arrival_s, w))]
    target = np.array([idc(arrival_s, w) for w in windows])

    def build(x: np.ndarray) -> ArrivalProcess:
        ratio, frac, cycle = 1.0 + math.exp(x[0]), 1.0 / (1.0 + math.exp(-x[1])), \
            math.exp(x[2])
        return ArrivalProcess(process="mmpp", burst_ratio=min(ratio, 1e6),
                              burst_fraction=min(max(frac, 1e-6), 1 - 1e-6),
                              burst_cycle_s=cycle)

    def resid(x: np.ndarray) -> np.ndarray:
        p = build(x)
        return np.log([mmpp_idc(p, rate, w) for w in windows]) - np.log(target)

    best = None
    for x0 in ([1.0, -1.5, 4.0], [2.0, -2.5, 6.0], [0.0, 0.0, 3.0]):
        res = least_squares(resid, np.array(x0), bounds=([-5, -8, 0], [12, 8, 10]))
        if best is None or res.cost < best.cost:
            best = res
    proc = build(best.x)
    return proc, {w: (float(t), mmpp_idc(proc, rate, w)) for w, t in
                  zip(windows, target, strict=True)}


def fit_workload(requests: Requests) -> dict:
    """Every fit of a trace (module docstring): ``rate_per_s``, ``prompt`` and
    ``output`` lognormal fits, ``gap_cv`` of the inter-arrival times, ``mmpp`` (an
    :class:`ArrivalProcess`) and ``idc`` (trace vs fitted MMPP by window)."""
    a = requests.arrival_s
    gaps = np.diff(a)
    mmpp, table = fit_mmpp(a)
    return {"requests": len(a), "rate_per_s": mean_rate_per_s(a),
            "prompt": lognormal_fit(requests.prompt_tokens),
            "output": lognormal_fit(requests.output_tokens),
            "gap_cv": float(gaps.std() / gaps.mean()), "mmpp": mmpp, "idc": table}
