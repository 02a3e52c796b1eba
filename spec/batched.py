"""The batched serving model's system: instances, colocated and disaggregated clusters, SLO.

An *instance* is ``tp`` GPUs running one engine copy: continuous batching with a
step-latency profile (:mod:`spec.profile`), a KV cache of ``kv_capacity_tokens`` in
blocks of ``block_size``, and a scheduling policy. ``../shared/DESIGN.md`` ("The batched
serving model") defines the semantics every engine of this toolkit follows.

Every type is frozen and checks itself; errors name the field (with its place in the
config, e.g. ``batched_disagg.decode.max_num_seqs``) and the allowed range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import _check
from .profile import Profile

#: Scheduling policies of an instance.
POLICIES: tuple[str, ...] = ("chunked", "prefill_priority")
#: How new requests (and finished prefills) are placed on instances.
ROUTINGS: tuple[str, ...] = ("least_outstanding", "round_robin", "shared_queue")
#: Which step yields a request's first output token.
FIRST_TOKEN: tuple[str, ...] = ("prefill", "decode")


@dataclass(frozen=True)
class Instance:
    """One engine copy on ``tp`` GPUs (``tp`` comes from its profile).

    Parameters
    ----------
    profile : str, optional
        A profile name (``distserve/opt-13b_tp1``, ``roofline/llama-3.1-8b_h100_tp1``,
        ``rates/8000_2000``) or a YAML file; unset, the run's top-level ``profile``.
    kv_capacity_tokens : int, optional
        KV-cache size in tokens; unset, the profile's (given, or derived from the GPU
        memory and the model's weights).
    block_size : int
        Tokens per KV block (16, as vLLM).
    max_num_seqs : int
        Most requests running at once.
    max_num_batched_tokens : int
        Token budget of one step (prefill tokens plus one per decode).
    long_prefill_token_threshold : int, optional
        ``chunked``: most prompt tokens one request takes in a step (unset: no limit).
    policy : {"chunked", "prefill_priority"}
        vLLM v1 (chunked prefill, decodes first) or vLLM v0 / DistServe's colocated
        baseline (prefill-only steps whenever a waiting request can be admitted).
    """

    profile: str | None = None
    kv_capacity_tokens: int | None = None
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    long_prefill_token_threshold: int | None = None
    policy: str = "chunked"
    name: str = field(default="instance", compare=False, repr=False,
                      metadata={"config": False})

    def __post_init__(self) -> None:
        n = self.name
        _check.choice(f"{n}.policy", self.policy, POLICIES)
        for f in ("block_size", "max_num_seqs", "max_num_batched_tokens"):
            object.__setattr__(self, f, _check.whole(f"{n}.{f}", getattr(self, f)))
        if self.long_prefill_token_threshold is not None:
            object.__setattr__(self, "long_prefill_token_threshold", _check.whole(
                f"{n}.long_prefill_token_threshold", self.long_prefill_token_threshold))
        if self.profile is None:
            return  # a cluster fills it from the run's profile (see spec.schema.build)
        from .profiles import load_profile

        if isinstance(self.profile, Profile):  # the Python API may pass one directly
            prof = self.profile
        else:
            try:
                prof = load_profile(self.profile)
            except ValueError as exc:
                raise ValueError(f"{n}.{exc}") from None
        object.__setattr__(self, "_profile", prof)
        kv = self.kv_capacity_tokens
        if kv is None:
            kv = prof.kv_capacity_tokens
            if kv is None:
                raise ValueError(f"{n}.kv_capacity_tokens is missing: profile "
                                 f"{prof.name!r} gives none; set it")
        kv = _check.whole(f"{n}.kv_capacity_tokens", kv)
        if kv < self.block_size:
            raise ValueError(f"{n}.kv_capacity_tokens = {kv}: must be >= block_size = "
                             f"{self.block_size} (at least one block)")
        object.__setattr__(self, "_kv_tokens", kv)

    @property
    def resolved(self) -> bool:
        return self.profile is not None

    @property
    def step_profile(self) -> Profile:
        """The resolved step-latency profile."""
        if self.profile is None:
            raise ValueError(f"{self.name}.profile is missing: give profile=NAME")
        return self._profile  # type: ignore[attr-defined]

    @property
    def tp(self) -> int:
        """GPUs of this instance (the profile's tensor parallelism)."""
        return self.step_profile.tp

    @property
    def kv_blocks(self) -> int:
        """KV blocks of the cache: ``floor(kv_capacity / block_size)``."""
        return self._kv_tokens // self.block_size  # type: ignore[attr-defined]

    @property
    def kv_tokens(self) -> int:
        """Usable KV tokens (whole blocks)."""
        return self.kv_blocks * self.block_size

    def blocks_for(self, tokens: int) -> int:
        """Blocks holding ``tokens`` cached tokens: ``ceil(tokens / block_size)``."""
        return -(-int(tokens) // self.block_size)


def _resolved(inst: Instance, name: str) -> Instance:
    """``inst`` named for its place in the cluster (re-validated under that name when it
    was built elsewhere), with its profile set."""
    from dataclasses import replace

    if inst.name != name:
        inst = replace(inst, name=name)
    if not inst.resolved:
        raise ValueError(f"{name}.profile is missing: give profile=NAME (e.g. "
                         "profile=distserve/opt-13b_tp1)")
    return inst


@dataclass(frozen=True)
class BatchedColocated:
    """``instances`` identical instances, each running prefill and decode (vLLM-style).

    ``first_token: prefill``: the step finishing a prompt also yields token 1.
    """

    instances: int = 2
    instance: Instance = field(default_factory=Instance)
    routing: str = "least_outstanding"
    first_token: str = "prefill"

    mode = "mono"

    def __post_init__(self) -> None:
        p = "batched_mono"
        object.__setattr__(self, "instances",
                           _check.instance_count(f"{p}.instances", self.instances))
        object.__setattr__(self, "instance", _resolved(self.instance, f"{p}.instance"))
        _check.choice(f"{p}.routing", self.routing, ROUTINGS)
        _check.choice(f"{p}.first_token", self.first_token, FIRST_TOKEN)

    @property
    def total_gpus(self) -> int:
        return self.instances * self.instance.tp

    def pools(self) -> tuple[tuple[str, int, Instance], ...]:
        """``(pool name, instances, instance)`` for each pool."""
        return (("colocated", self.instances, self.instance),)


@dataclass(frozen=True)
class BatchedDisaggregated:
    """A prefill pool and a decode pool of instances, KV moved between them (DistServe).

    A finished prefill's KV is sent over a link of ``link_latency_s`` and
    ``link_bandwidth_bytes_per_s``: ``latency + P kv_bytes_per_token / bandwidth``.
    ``first_token: decode``: the first decode step yields token 1.
    """

    prefill_instances: int = 1
    decode_instances: int = 1
    prefill: Instance = field(default_factory=Instance)
    decode: Instance = field(default_factory=Instance)
    link_latency_s: float = 0.0
    link_bandwidth_bytes_per_s: float = 25e9
    routing: str = "least_outstanding"
    first_token: str = "decode"

    mode = "disagg"

    def __post_init__(self) -> None:
        p = "batched_disagg"
        for f in ("prefill_instances", "decode_instances"):
            object.__setattr__(self, f, _check.instance_count(f"{p}.{f}", getattr(self, f)))
        object.__setattr__(self, "prefill", _resolved(self.prefill, f"{p}.prefill"))
        object.__setattr__(self, "decode", _resolved(self.decode, f"{p}.decode"))
        object.__setattr__(self, "link_latency_s",
                           _check.nonnegative(f"{p}.link_latency_s", self.link_latency_s))
        bw = self.link_bandwidth_bytes_per_s
        if not (isinstance(bw, float) and bw == math.inf):  # inf: an instant transfer
            bw = _check.positive(f"{p}.link_bandwidth_bytes_per_s", bw)
        object.__setattr__(self, "link_bandwidth_bytes_per_s", bw)
        _check.choice(f"{p}.routing", self.routing, ROUTINGS)
        _check.choice(f"{p}.first_token", self.first_token, FIRST_TOKEN)
        if self.kv_bytes_per_token is None:
            raise ValueError(f"{p}.prefill.profile {self.prefill.step_profile.name!r} gives "
                             "no kv_bytes_per_token: the KV transfer needs it")

    @property
    def total_gpus(self) -> int:
        return self.prefill_instances * self.prefill.tp + self.decode_instances * self.decode.tp

    @property
    def kv_bytes_per_token(self) -> float | None:
        return self.prefill.step_profile.kv_bytes_per_token

    def transfer_s(self, prompt_tokens: float) -> float:
        """KV transfer time of a prompt: ``latency + P kv_bytes / bandwidth``."""
        return self.link_latency_s + prompt_tokens * (
            self.kv_bytes_per_token / self.link_bandwidth_bytes_per_s)  # type: ignore[operator]

    def pools(self) -> tuple[tuple[str, int, Instance], ...]:
        return (("prefill", self.prefill_instances, self.prefill),
                ("decode", self.decode_instances, self.decode))


BatchedCluster = BatchedColocated | BatchedDisaggregated


@dataclass(frozen=True)
class SLO:
    """A service-level objective: TTFT and TPOT bounds met by ``attainment`` of requests.

    The defaults are DistServe's chatbot setting for OPT-13B (TTFT 0.25 s, TPOT 0.1 s,
    90 % attainment).
    """

    ttft_s: float = 0.25
    tpot_s: float = 0.1
    attainment: float = 0.9

    def __post_init__(self) -> None:
        object.__setattr__(self, "ttft_s", _check.positive("slo.ttft_s", self.ttft_s))
        object.__setattr__(self, "tpot_s", _check.positive("slo.tpot_s", self.tpot_s))
        object.__setattr__(self, "attainment", _check.real(
            "slo.attainment", self.attainment, low=0.0, high=1.0, low_open=True))
