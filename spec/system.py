"""The system under study: workload, clusters and one simulation's settings.

Frozen dataclasses that both witnesses (``analytic`` and ``simulation``) take. Each
validates itself at construction and raises one ``ValueError`` naming the field, the
value and the allowed range, so nothing runs on bad input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import _check
from .batched import SLO, BatchedColocated, BatchedDisaggregated
from .tokens import TokenDist

#: Architectures: ``mono`` (one pool holds prefill and decode), ``disagg`` (prefill pool,
#: then decode pool), ``both`` (the seed's *compare*: both on the same requests).
MODES: tuple[str, ...] = ("mono", "disagg", "both")
#: Serving models: ``fifo`` (the seed: one request per GPU at fixed tokens/s) and
#: ``batched`` (continuous batching on instances with step-latency profiles).
SERVINGS: tuple[str, ...] = ("fifo", "batched")
#: Arrival processes: open-loop renewal or modulated streams, or a closed loop.
ARRIVAL_PROCESSES: tuple[str, ...] = ("poisson", "gamma", "mmpp", "closed")


@dataclass(frozen=True)
class ArrivalProcess:
    """How requests arrive (the rate is :attr:`Workload.arrival_rate_per_s`).

    Parameters
    ----------
    process : {"poisson", "gamma", "mmpp", "closed"}
        ``poisson``; ``gamma``: renewal with Gamma inter-arrival times of coefficient of
        variation ``cv`` (``cv = 1`` is Poisson); ``mmpp``: a two-state Markov-modulated
        Poisson process whose rate is ``burst_ratio`` times higher in bursts, which take
        ``burst_fraction`` of the time, one calm-plus-burst cycle lasting
        ``burst_cycle_s`` on average (the mean rate stays the workload's);
        ``closed``: ``concurrency`` clients, each sending its next request when the last
        one completes, after an exponential think time of mean ``think_time_s`` (the rate
        is then an outcome, not an input).
    """

    process: str = "poisson"
    cv: float = 1.0
    burst_ratio: float = 4.0
    burst_fraction: float = 0.2
    burst_cycle_s: float = 60.0
    concurrency: int = 16
    think_time_s: float = 0.0

    def __post_init__(self) -> None:
        _check.choice("arrival.process", self.process, ARRIVAL_PROCESSES)
        object.__setattr__(self, "cv", _check.real("arrival.cv", self.cv, low=0.0,
                                                   low_open=True, high=100.0))
        object.__setattr__(self, "burst_ratio", _check.real(
            "arrival.burst_ratio", self.burst_ratio, low=1.0, high=1e6))
        object.__setattr__(self, "burst_fraction", _check.real(
            "arrival.burst_fraction", self.burst_fraction, low=0.0, high=1.0, low_open=True,
            high_open=True))
        object.__setattr__(self, "burst_cycle_s",
                           _check.positive("arrival.burst_cycle_s", self.burst_cycle_s))
        object.__setattr__(self, "concurrency",
                           _check.whole("arrival.concurrency", self.concurrency, high=10**6))
        object.__setattr__(self, "think_time_s",
                           _check.nonnegative("arrival.think_time_s", self.think_time_s))

    def mmpp_rates(self, mean_rate_per_s: float) -> tuple[float, float, float, float]:
        """``(calm rate, burst rate, calm -> burst, burst -> calm)`` switching rates (1/s):
        ``lam_calm = lam / (1 + f (r - 1))``, ``lam_burst = r lam_calm``, mean burst
        ``f T``, mean calm ``(1 - f) T``."""
        f, r, t = self.burst_fraction, self.burst_ratio, self.burst_cycle_s
        calm = mean_rate_per_s / (1.0 + f * (r - 1.0))
        return calm, r * calm, 1.0 / ((1.0 - f) * t), 1.0 / (f * t)


POISSON = ArrivalProcess()


@dataclass(frozen=True)
class Workload:
    """Poisson arrivals of requests with independent prompt and output token counts.

    Parameters
    ----------
    arrival_rate_per_s : float
        Poisson arrival rate (> 0).
    prompt_tokens, output_tokens : TokenDist
        Prompt length ``P`` and output length ``O``.
    """

    arrival_rate_per_s: float
    prompt_tokens: TokenDist
    output_tokens: TokenDist
    arrival: ArrivalProcess = POISSON

    def __post_init__(self) -> None:
        object.__setattr__(self, "arrival_rate_per_s",
                           _check.positive("arrival.rate_per_s", self.arrival_rate_per_s))
        for name in ("prompt_tokens", "output_tokens"):
            if not isinstance(getattr(self, name), TokenDist):
                raise ValueError(f"{name} = {getattr(self, name)!r}: must be a TokenDist")
        if not isinstance(self.arrival, ArrivalProcess):
            raise ValueError(f"arrival = {self.arrival!r}: must be an ArrivalProcess")

    def with_rate(self, arrival_rate_per_s: float) -> Workload:
        """The same token laws and arrival process at another arrival rate."""
        return Workload(arrival_rate_per_s, self.prompt_tokens, self.output_tokens,
                        self.arrival)


@dataclass(frozen=True)
class MonolithicCluster:
    """``num_gpus`` identical GPUs, one FIFO queue; a request holds one GPU for its prefill
    ``P / prefill_tokens_per_s`` and then its whole decode ``O / decode_tokens_per_s``."""

    num_gpus: int = 4
    prefill_tokens_per_s: float = 8000.0
    decode_tokens_per_s: float = 2000.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_gpus", _check.gpu_count("cluster_mono.num_gpus",
                                                                     self.num_gpus))
        object.__setattr__(self, "prefill_tokens_per_s", _check.token_rate(
            "cluster_mono.prefill_tokens_per_s", self.prefill_tokens_per_s))
        object.__setattr__(self, "decode_tokens_per_s", _check.token_rate(
            "cluster_mono.decode_tokens_per_s", self.decode_tokens_per_s))

    mode = "mono"

    @property
    def total_gpus(self) -> int:
        return self.num_gpus


@dataclass(frozen=True)
class DisaggregatedCluster:
    """A prefill pool of ``prefill_gpus`` then a decode pool of ``decode_gpus`` (tandem FIFO).

    After prefill, the KV cache moves to the decode pool in
    ``kv_transfer_s_per_token * P`` seconds (zero by default); the decode GPU is then held
    for the whole decode ``O / decode_tokens_per_s``.
    """

    prefill_gpus: int = 2
    decode_gpus: int = 2
    prefill_tokens_per_s: float = 8000.0
    decode_tokens_per_s: float = 2000.0
    kv_transfer_s_per_token: float = 0.0

    def __post_init__(self) -> None:
        f = "cluster_disagg."
        object.__setattr__(self, "prefill_gpus", _check.gpu_count(f + "prefill_gpus",
                                                              self.prefill_gpus))
        object.__setattr__(self, "decode_gpus", _check.gpu_count(f + "decode_gpus",
                                                                      self.decode_gpus))
        object.__setattr__(self, "prefill_tokens_per_s", _check.token_rate(
            f + "prefill_tokens_per_s", self.prefill_tokens_per_s))
        object.__setattr__(self, "decode_tokens_per_s", _check.token_rate(
            f + "decode_tokens_per_s", self.decode_tokens_per_s))
        object.__setattr__(self, "kv_transfer_s_per_token", _check.nonnegative(
            f + "kv_transfer_s_per_token", self.kv_transfer_s_per_token))

    mode = "disagg"

    @property
    def total_gpus(self) -> int:
        return self.prefill_gpus + self.decode_gpus


Cluster = MonolithicCluster | DisaggregatedCluster | BatchedColocated | BatchedDisaggregated


@dataclass(frozen=True)
class SimConfig:
    """Everything one simulation run needs.

    Parameters
    ----------
    mode : {"mono", "disagg", "both"}
    sim_seconds : float
        Arrivals happen in ``[0, sim_seconds)``; the run then drains (nothing is censored).
    warmup_seconds : float
        Requests arriving before this are not measured (``0 <= warmup < sim_seconds``).
    random_seed : int
        Fixes every random draw (``>= 0``).
    replications : int
        Independent replications, each with its own stream spawned from the seed.
    workload : Workload
    cluster_mono, cluster_disagg : MonolithicCluster, DisaggregatedCluster
    """

    mode: str
    sim_seconds: float
    warmup_seconds: float
    random_seed: int
    workload: Workload
    cluster_mono: MonolithicCluster
    cluster_disagg: DisaggregatedCluster
    replications: int = 1
    quantiles: tuple[float, ...] = field(default=(0.5, 0.9, 0.99))
    serving: str = "fifo"
    batched_mono: BatchedColocated | None = None
    batched_disagg: BatchedDisaggregated | None = None
    slo: SLO = field(default_factory=SLO)

    def __post_init__(self) -> None:
        _check.choice("mode", self.mode, MODES)
        _check.choice("serving", self.serving, SERVINGS)
        if self.serving == "batched":
            for key in ("batched_mono", "batched_disagg"):
                if getattr(self, key) is None:
                    raise ValueError(f"{key} is missing: serving 'batched' needs it")
        elif self.workload.arrival.process == "closed":
            raise ValueError("arrival.process = 'closed': the fifo serving model takes "
                             "open-loop arrivals (poisson, gamma, mmpp); use serving=batched")
        sim = _check.positive("sim_seconds", self.sim_seconds)
        warm = _check.nonnegative("warmup_seconds", self.warmup_seconds)
        if warm >= sim:
            raise ValueError(f"warmup_seconds = {warm!r}: must be < sim_seconds = {sim!r}")
        object.__setattr__(self, "sim_seconds", sim)
        object.__setattr__(self, "warmup_seconds", warm)
        object.__setattr__(self, "random_seed",
                           _check.whole("random_seed", self.random_seed, low=0))
        object.__setattr__(self, "replications",
                           _check.whole("replications", self.replications, low=1, high=10_000))
        qs = tuple(_check.real("quantiles[]", q, low=0.0, high=1.0, low_open=True,
                               high_open=True) for q in self.quantiles)
        object.__setattr__(self, "quantiles", qs)
        expected = self.workload.arrival_rate_per_s * (sim - warm)
        if expected > 5e8:
            raise ValueError(
                f"sim_seconds = {sim!r}: about {expected:.3g} measured requests; "
                "must be <= 5e8 (lower sim_seconds or arrival.rate_per_s)")
        if not math.isfinite(expected):
            raise ValueError("arrival.rate_per_s * sim_seconds must be finite")

    def clusters(self) -> tuple[Cluster, ...]:
        """The clusters this run simulates, in order (``both`` gives mono then disagg):
        the seed clusters for ``serving: fifo``, the batched ones for ``batched``."""
        mono, disagg = ((self.cluster_mono, self.cluster_disagg) if self.serving == "fifo"
                        else (self.batched_mono, self.batched_disagg))
        if self.mode == "mono":
            return (mono,)
        if self.mode == "disagg":
            return (disagg,)
        return (mono, disagg)
