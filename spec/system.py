"""The system under study: workload, clusters and one simulation's settings.

Frozen dataclasses that both witnesses (``analytic`` and ``simulation``) take. Each
validates itself at construction and raises one ``ValueError`` naming the field, the
value and the allowed range, so nothing runs on bad input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import _check
from .tokens import TokenDist

#: Architectures: ``mono`` (one pool holds prefill and decode), ``disagg`` (prefill pool,
#: then decode pool), ``both`` (the seed's *compare*: both on the same requests).
MODES: tuple[str, ...] = ("mono", "disagg", "both")


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "arrival_rate_per_s",
                           _check.positive("arrival.rate_per_s", self.arrival_rate_per_s))
        for name in ("prompt_tokens", "output_tokens"):
            if not isinstance(getattr(self, name), TokenDist):
                raise ValueError(f"{name} = {getattr(self, name)!r}: must be a TokenDist")

    def with_rate(self, arrival_rate_per_s: float) -> Workload:
        """The same token laws at another arrival rate."""
        return Workload(arrival_rate_per_s, self.prompt_tokens, self.output_tokens)


@dataclass(frozen=True)
class MonolithicCluster:
    """``num_gpus`` identical GPUs, one FIFO queue; a request holds one GPU for its prefill
    ``P / prefill_tokens_per_s`` and then its whole decode ``O / decode_tokens_per_s``."""

    num_gpus: int = 4
    prefill_tokens_per_s: float = 8000.0
    decode_tokens_per_s: float = 2000.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_gpus", _check.whole("cluster_mono.num_gpus", self.num_gpus))
        object.__setattr__(self, "prefill_tokens_per_s", _check.positive(
            "cluster_mono.prefill_tokens_per_s", self.prefill_tokens_per_s))
        object.__setattr__(self, "decode_tokens_per_s", _check.positive(
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
        object.__setattr__(self, "prefill_gpus", _check.whole(f + "prefill_gpus",
                                                              self.prefill_gpus))
        object.__setattr__(self, "decode_gpus", _check.whole(f + "decode_gpus", self.decode_gpus))
        object.__setattr__(self, "prefill_tokens_per_s", _check.positive(
            f + "prefill_tokens_per_s", self.prefill_tokens_per_s))
        object.__setattr__(self, "decode_tokens_per_s", _check.positive(
            f + "decode_tokens_per_s", self.decode_tokens_per_s))
        object.__setattr__(self, "kv_transfer_s_per_token", _check.nonnegative(
            f + "kv_transfer_s_per_token", self.kv_transfer_s_per_token))

    mode = "disagg"

    @property
    def total_gpus(self) -> int:
        return self.prefill_gpus + self.decode_gpus


Cluster = MonolithicCluster | DisaggregatedCluster


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

    def __post_init__(self) -> None:
        _check.choice("mode", self.mode, MODES)
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
        """The clusters this run simulates, in order (``both`` gives mono then disagg)."""
        if self.mode == "mono":
            return (self.cluster_mono,)
        if self.mode == "disagg":
            return (self.cluster_disagg,)
        return (self.cluster_mono, self.cluster_disagg)
