"""Step-latency profiles: how long one iteration of a batched instance takes.

A step processes prefill chunks (chunk ``i``: ``l_i`` new prompt tokens after
``prefix_i`` cached ones) and decodes (decode ``j``: one token with ``ctx_j`` tokens
already cached). Every form below is a function of seven sums over the step, the
:class:`StepSums`, so that the SimPy model and the compiled engine evaluate one and the
same function (:func:`step_time_s`) with the same floating-point operations:

``n_p``, ``s_l = sum l``, ``s_l2 = sum l^2``, ``s_lx = sum l * prefix``,
``s_x = sum prefix``, ``n_d``, ``s_c = sum (ctx + 1)``.

Forms (``Profile.form``), all times in seconds:

``rates`` (the seed model as a profile)
    ``s_l / r_p + n_d / r_d``: a prefill of ``P`` tokens takes ``P / r_p``, one decode
    step ``1 / r_d`` per request in it.
``distserve`` (DistServe, OSDI 2024, ``simdistserve/estimators``)
    prefill-only: ``a_p + b_p s_l + c_p s_l2``; decode-only: ``a + b s_c + c n_d`` with
    ``(a, b, c)`` the small-batch set when ``n_d < threshold``, else the large-batch set;
    a mixed step: the prefill formula plus ``b s_c + c n_d`` (one intercept).
``mixed``
    ``overhead + max(floor, alpha + beta (s_l + n_d)) + gamma s_l2 + delta (s_c - n_d)
    + epsilon n_d + zeta s_lx + eta s_x + [n_p > 0] (theta (s_c - n_d) + iota n_d)``:
    the linear layers (weight-bound ``floor``, then ``beta`` per token), attention within
    the new tokens (``gamma``), decode attention over cached context (``delta``), per
    sequence (LM head and sampler, ``epsilon``), a chunk's attention to its cached prefix
    (``zeta`` per pair, ``eta`` per prefix token read), and what a decode costs more when a
    prefill chunk shares its step (``theta``, ``iota``: one fused attention kernel is
    slower than the two apart). The last four default to 0 (DESIGN.md's mixed form);
    :mod:`simulation.calibrate` fits all eleven to a measured kernel profile.
``roofline`` (model config x GPU spec, per tensor-parallel group)
    ``overhead + max(F / (tp peak eta_f), M / (tp bw eta_b)) + comm``, with FLOPs
    ``F = 2 N_lin (s_l + n_d) + 2 V h (n_p + n_d) + 4 L H d (s_lx + (s_l2 + s_l)/2 + s_c)``
    (linear layers, the LM head once per sequence, attention over causal pairs), bytes
    ``M = W + kv (s_x + s_l + s_c)`` (weights once, cached KV read, new KV written), and
    ring all-reduce ``comm = 4 L (tp - 1)/tp h b (s_l + n_d) / link`` (two per layer).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from . import _check

#: The forms and the coefficient names each one takes, in the order of ``coeffs``.
FORMS: dict[str, tuple[str, ...]] = {
    "rates": ("s_per_prefill_token", "s_per_decode_token"),
    "distserve": ("prefill_a", "prefill_b", "prefill_c", "small_a", "small_b", "small_c",
                  "large_a", "large_b", "large_c", "threshold"),
    "mixed": ("overhead", "floor", "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta",
              "theta", "iota"),
    "roofline": ("overhead", "flop_s_per_token", "flop_s_per_sequence", "flop_s_per_pair",
                 "mem_s_fixed", "mem_s_per_kv_token", "comm_s_per_token"),
}
FORM_IDS: dict[str, int] = {name: i for i, name in enumerate(FORMS)}


def step_time_s(form: int, c, n_p: float, s_l: float, s_l2: float, s_lx: float, s_x: float,
                n_d: float, s_c: float) -> float:
    """The duration of one step (s) from its sums, for profile ``form`` (an id of
    :data:`FORM_IDS`) with coefficients ``c``. Plain arithmetic only, so that numba
    compiles this very function for the fast engine (same operations, same bits)."""
    if form == 0:  # rates
        return s_l * c[0] + n_d * c[1]
    if form == 1:  # distserve
        if n_d < c[9]:
            a, b, k = c[3], c[4], c[5]
        else:
            a, b, k = c[6], c[7], c[8]
        if n_p > 0:
            t = c[0] + c[1] * s_l + c[2] * s_l2
            if n_d > 0:
                t = t + (b * s_c + k * n_d)
            return t
        return a + b * s_c + k * n_d
    if form == 2:  # mixed
        lin = c[2] + c[3] * (s_l + n_d)
        if lin < c[1]:
            lin = c[1]
        t = c[0] + lin + c[4] * s_l2 + c[5] * (s_c - n_d) + c[6] * n_d + c[7] * s_lx + c[8] * s_x
        if n_p > 0:
            t = t + (c[9] * (s_c - n_d) + c[10] * n_d)
        return t
    # roofline
    compute = c[1] * (s_l + n_d) + c[2] * (n_p + n_d) + c[3] * (s_lx + 0.5 * (s_l2 + s_l) + s_c)
    memory = c[4] + c[5] * (s_x + s_l + s_c)
    return c[0] + (compute if compute > memory else memory) + c[6] * (s_l + n_d)


@dataclass(frozen=True)
class ModelConfig:
    """A transformer's shape: what the roofline and the KV cache need.

    Parameters
    ----------
    name : str
    num_layers, hidden_size, num_heads, num_kv_heads : int
        As in a Hugging Face ``config.json`` (:meth:`from_hf_config` reads one).
    head_dim, intermediate_size, vocab_size : int
        Likewise.
    dtype_bytes : int
        Bytes per weight and per KV element (2 for bf16 / fp16).
    gated_mlp : bool
        Three MLP matrices (SwiGLU: Llama, Qwen) instead of two (OPT).
    tie_word_embeddings : bool
        The LM head shares the embedding matrix.
    """

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    dtype_bytes: int = 2
    gated_mlp: bool = True
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        for f in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
                  "intermediate_size", "vocab_size", "dtype_bytes"):
            object.__setattr__(self, f, _check.whole(f"{self.name}.{f}", getattr(self, f)))

    @classmethod
    def from_hf_config(cls, config: dict, name: str | None = None) -> ModelConfig:
        """Read the fields of a Hugging Face ``config.json`` (Llama, Qwen, OPT families).

        ``num_key_value_heads`` defaults to the attention heads, ``head_dim`` to
        ``hidden_size / num_attention_heads``; OPT's ``ffn_dim`` is its intermediate size;
        ``torch_dtype`` float32 gives 4 bytes, else 2.
        """
        def get(*keys: str) -> object:
            for k in keys:
                if k in config:
                    return config[k]
            raise ValueError(f"model config {name or ''}: missing {' or '.join(keys)}")

        heads = int(get("num_attention_heads"))  # type: ignore[arg-type]
        hidden = int(get("hidden_size"))  # type: ignore[arg-type]
        kind = str(config.get("model_type", ""))
        return cls(
            name=name or str(config.get("_name_or_path", kind or "model")),
            num_layers=int(get("num_hidden_layers")),  # type: ignore[arg-type]
            hidden_size=hidden, num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate_size=int(get("intermediate_size", "ffn_dim")),  # type: ignore[arg-type]
            vocab_size=int(get("vocab_size")),  # type: ignore[arg-type]
            dtype_bytes=4 if config.get("torch_dtype") == "float32" else 2,
            gated_mlp=kind != "opt",
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        )

    @property
    def kv_bytes_per_token(self) -> int:
        """``2 layers kv_heads head_dim dtype_bytes``: keys and values of one token."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype_bytes

    @property
    def linear_params(self) -> int:
        """Weights multiplied per token in every layer: attention projections and MLP."""
        h, d = self.hidden_size, self.head_dim
        attn = h * self.num_heads * d * 2 + h * self.num_kv_heads * d * 2
        mlp = (3 if self.gated_mlp else 2) * h * self.intermediate_size
        return self.num_layers * (attn + mlp)

    @property
    def num_params(self) -> int:
        """Linear layers, embeddings and the LM head (norms and biases left out)."""
        embed = self.vocab_size * self.hidden_size
        return self.linear_params + embed * (1 if self.tie_word_embeddings else 2)

    @property
    def weight_bytes(self) -> int:
        return self.num_params * self.dtype_bytes


def kv_capacity_tokens(model: ModelConfig, memory_bytes_per_gpu: float, tp: int,
                       memory_utilisation: float = 0.9,
                       reserve_bytes_per_gpu: float = 0.0) -> int:
    """Tokens of KV cache an instance holds, as vLLM sizes it (0 when nothing is left):

    ``floor(((memory util - reserve) tp - weights) / kv_bytes_per_token)``

    with ``memory_utilisation`` vLLM's ``gpu_memory_utilization`` and ``reserve`` what its
    profiling run keeps back per GPU (activations, CUDA graphs, the runtime).
    """
    free = (memory_bytes_per_gpu * memory_utilisation - reserve_bytes_per_gpu) * tp \
        - model.weight_bytes
    return math.floor(free / model.kv_bytes_per_token) if free > 0 else 0


@dataclass(frozen=True)
class GPUSpec:
    """One GPU: dense peak FLOP/s at the model's dtype, HBM bandwidth and size, and the
    per-direction bandwidth of the link between GPUs of one tensor-parallel group."""

    name: str
    peak_flops: float
    memory_bandwidth_bytes_per_s: float
    memory_bytes: float
    interconnect_bytes_per_s: float

    def __post_init__(self) -> None:
        for f in ("peak_flops", "memory_bandwidth_bytes_per_s", "memory_bytes",
                  "interconnect_bytes_per_s"):
            object.__setattr__(self, f, _check.positive(f"{self.name}.{f}", getattr(self, f)))


@dataclass(frozen=True)
class Profile:
    """A step-latency profile: the form, its coefficients (seconds), and what it says of
    the instance (tensor parallelism, KV capacity, bytes of KV per token).

    Build one with :meth:`rates`, :meth:`distserve`, :meth:`mixed` or :meth:`roofline`
    (or :func:`spec.profiles.load_profile` by name). Negative coefficients are clamped to
    0 with a warning naming them (fitted values, not physics).
    """

    name: str
    form: str
    coeffs: tuple[float, ...]
    tp: int = 1
    kv_capacity_tokens: int | None = None
    kv_bytes_per_token: float | None = None
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _check.choice(f"profile {self.name}: form", self.form, tuple(FORMS))
        names = FORMS[self.form]
        if len(self.coeffs) != len(names):
            raise ValueError(f"profile {self.name}: form {self.form!r} takes "
                             f"{len(names)} coefficients ({', '.join(names)}), "
                             f"got {len(self.coeffs)}")
        coeffs = []
        for n, v in zip(names, self.coeffs, strict=True):
            x = _check.real(f"profile {self.name}: {n}", v)
            if x < 0:
                warnings.warn(f"profile {self.name}: {n} = {x!r} is negative (a fitted "
                              "value, not physics); clamped to 0", stacklevel=3)
                x = 0.0
            coeffs.append(x)
        object.__setattr__(self, "coeffs", tuple(coeffs))
        object.__setattr__(self, "tp", _check.whole(f"profile {self.name}: tp", self.tp))
        if self.kv_capacity_tokens is not None:
            object.__setattr__(self, "kv_capacity_tokens", _check.whole(
                f"profile {self.name}: kv_capacity_tokens", self.kv_capacity_tokens))
        if self.kv_bytes_per_token is not None:
            object.__setattr__(self, "kv_bytes_per_token", _check.positive(
                f"profile {self.name}: kv_bytes_per_token", self.kv_bytes_per_token))
        if self.form == "rates" and min(self.coeffs) <= 0:
            raise ValueError(f"profile {self.name}: token rates must be > 0")

    @property
    def form_id(self) -> int:
        return FORM_IDS[self.form]

    def with_step_overhead(self, seconds: float) -> Profile:
        """The same profile with ``seconds`` added to every step (its intercepts: the
        mixed and roofline ``overhead``, DistServe's three ``a``); for time a kernel
        profile does not see (the engine's scheduling and input preparation)."""
        s = _check.nonnegative(f"profile {self.name}: step overhead (s)", seconds)
        at = {"mixed": (0,), "roofline": (0,), "distserve": (0, 3, 6)}.get(self.form)
        if at is None:
            raise ValueError(f"profile {self.name}: form {self.form!r} has no step intercept")
        c = list(self.coeffs)
        for i in at:
            c[i] += s
        return Profile(self.name, self.form, tuple(c), self.tp, self.kv_capacity_tokens,
                       self.kv_bytes_per_token, self.source)

    def step_time_s(self, n_p: float = 0, s_l: float = 0, s_l2: float = 0, s_lx: float = 0,
                    s_x: float = 0, n_d: float = 0, s_c: float = 0) -> float:
        """One step's duration (s) from its sums (see :func:`step_time_s`)."""
        return step_time_s(self.form_id, self.coeffs, n_p, s_l, s_l2, s_lx, s_x, n_d, s_c)

    def prefill_time_s(self, lengths: list[int] | tuple[int, ...]) -> float:
        """A prefill-only step of whole prompts ``lengths``."""
        return self.step_time_s(n_p=len(lengths), s_l=float(sum(lengths)),
                                s_l2=float(sum(x * x for x in lengths)))

    def decode_time_s(self, contexts: list[int] | tuple[int, ...]) -> float:
        """A decode-only step over requests with these cached contexts."""
        return self.step_time_s(n_d=len(contexts), s_c=float(sum(c + 1 for c in contexts)))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def rates(cls, prefill_tokens_per_s: float, decode_tokens_per_s: float,
              name: str = "rates", **kw) -> Profile:
        """The seed model as a profile: prefill ``P / r_p``, a decode step ``1 / r_d``."""
        r_p = _check.token_rate(f"profile {name}: prefill_tokens_per_s", prefill_tokens_per_s)
        r_d = _check.token_rate(f"profile {name}: decode_tokens_per_s", decode_tokens_per_s)
        return cls(name, "rates", (1.0 / r_p, 1.0 / r_d), **kw)

    @classmethod
    def distserve(cls, prefill: tuple[float, float, float],
                  decode_small: tuple[float, float, float],
                  decode_large: tuple[float, float, float], threshold: int,
                  name: str = "distserve", time_unit_s: float = 1e-3, **kw) -> Profile:
        """DistServe's fitted coefficients (given in ms by default: ``time_unit_s``)."""
        u = time_unit_s
        coeffs = [v * u for v in (*prefill, *decode_small, *decode_large)]
        return cls(name, "distserve", (*coeffs, float(threshold)), **kw)

    @classmethod
    def mixed(cls, overhead: float, floor: float, alpha: float, beta: float, gamma: float,
              delta: float, epsilon: float, zeta: float = 0.0, eta: float = 0.0,
              theta: float = 0.0, iota: float = 0.0, name: str = "mixed", **kw) -> Profile:
        """The mixed-step form (seconds; the module docstring gives the formula)."""
        return cls(name, "mixed", (overhead, floor, alpha, beta, gamma, delta, epsilon, zeta,
                                   eta, theta, iota), **kw)

    @classmethod
    def roofline(cls, model: ModelConfig, gpu: GPUSpec, tp: int, *,
                 flops_efficiency: float, bandwidth_efficiency: float, overhead_s: float,
                 memory_utilisation: float = 0.9, activation_reserve_bytes_per_gpu: float = 0.0,
                 name: str | None = None, source: str = "") -> Profile:
        """A roofline profile of ``model`` on ``tp`` GPUs ``gpu`` (formula in the module
        docstring). KV capacity ``(memory tp util - weights - reserve tp) / kv_bytes``."""
        name = name or f"roofline/{model.name}_{gpu.name}_tp{tp}"
        tp = _check.whole(f"profile {name}: tp", tp)
        eta_f = _check.real(f"profile {name}: flops_efficiency", flops_efficiency,
                            low=0.0, high=1.0, low_open=True)
        eta_b = _check.real(f"profile {name}: bandwidth_efficiency", bandwidth_efficiency,
                            low=0.0, high=1.0, low_open=True)
        flops = tp * gpu.peak_flops * eta_f
        bw = tp * gpu.memory_bandwidth_bytes_per_s * eta_b
        m = model
        pair = 4.0 * m.num_layers * m.num_heads * m.head_dim
        comm = 0.0 if tp == 1 else (4.0 * m.num_layers * (tp - 1) / tp * m.hidden_size
                                    * m.dtype_bytes / gpu.interconnect_bytes_per_s)
        coeffs = (overhead_s, 2.0 * m.linear_params / flops,
                  2.0 * m.vocab_size * m.hidden_size / flops, pair / flops,
                  m.weight_bytes / bw, m.kv_bytes_per_token / bw, comm)
        kv_tokens = kv_capacity_tokens(m, gpu.memory_bytes, tp, memory_utilisation,
                                       activation_reserve_bytes_per_gpu)
        if kv_tokens < 1:
            raise ValueError(
                f"profile {name}: the weights ({m.weight_bytes / 2**30:.1f} GiB) leave no "
                f"room for a KV cache on {tp} x {gpu.name} "
                f"({gpu.memory_bytes / 2**30:.1f} GiB at {memory_utilisation:g}); "
                "use a larger tp")
        return cls(name, "roofline", coeffs, tp=tp, kv_capacity_tokens=kv_tokens,
                   kv_bytes_per_token=float(m.kv_bytes_per_token), source=source)
