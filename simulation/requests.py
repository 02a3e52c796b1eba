"""Request streams: synthetic streams (Poisson, Gamma, MMPP) from one seed, and traces.

Every run, synthetic or trace, goes through a :class:`Requests` value, so both engines
and both architectures see exactly the same requests (common random numbers).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spec import Workload

# Column names accepted in trace files: ours, DistServe's, the Azure / Vidur traces'.
_ARRIVAL_KEYS = ("arrival_s", "start_time", "arrived_at")
_PROMPT_KEYS = ("prompt_tokens", "prompt_len", "num_prefill_tokens")
_OUTPUT_KEYS = ("output_tokens", "output_len", "num_decode_tokens")


@dataclass(frozen=True)
class Requests:
    """A stream of requests: arrival times (s) and prompt / output token counts.

    Token counts are whole numbers for real workloads; fractional counts are accepted
    as amounts of work, which lets tests feed exactly exponential service times.

    Raises
    ------
    ValueError
        If the arrays differ in length, an arrival is negative, not finite or earlier
        than the one before it, or a token count is not a positive finite number.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __post_init__(self) -> None:
        arrays = {}
        for name in ("arrival_s", "prompt_tokens", "output_tokens"):
            a = np.asarray(getattr(self, name), dtype=np.float64)
            if a.ndim != 1:
                raise ValueError(f"{name}: must be one-dimensional, got shape {a.shape}")
            arrays[name] = a
            object.__setattr__(self, name, a)
        n = {len(a) for a in arrays.values()}
        if len(n) != 1:
            raise ValueError("arrival_s, prompt_tokens and output_tokens must have the same "
                             f"length, got {[len(a) for a in arrays.values()]}")
        arr = arrays["arrival_s"]
        if not np.all(np.isfinite(arr)) or (len(arr) and arr.min() < 0):
            i = int(np.flatnonzero(~np.isfinite(arr) | (arr < 0))[0])
            raise ValueError(f"arrival_s[{i}] = {float(arr[i])!r}: must be a finite number >= 0")
        if len(arr) > 1 and np.any(np.diff(arr) < 0):
            i = int(np.flatnonzero(np.diff(arr) < 0)[0]) + 1
            raise ValueError(f"arrival_s[{i}] = {float(arr[i])!r}: must be >= arrival_s[{i - 1}] = "
                             f"{float(arr[i - 1])!r} (arrivals must be sorted)")
        for name in ("prompt_tokens", "output_tokens"):
            a = arrays[name]
            bad = ~np.isfinite(a) | (a <= 0)
            if np.any(bad):
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{name}[{i}] = {float(a[i])!r}: must be a finite number > 0")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @classmethod
    def _trusted(cls, arrival_s: np.ndarray, prompt_tokens: np.ndarray,
                 output_tokens: np.ndarray) -> Requests:
        """Skip the checks for streams valid by construction (generated here)."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "arrival_s", np.asarray(arrival_s, dtype=np.float64))
        object.__setattr__(obj, "prompt_tokens", np.asarray(prompt_tokens, dtype=np.float64))
        object.__setattr__(obj, "output_tokens", np.asarray(output_tokens, dtype=np.float64))
        return obj


def spawn_seeds(random_seed: int, replications: int) -> list[np.random.SeedSequence]:
    """One independent :class:`numpy.random.SeedSequence` per replication.

    ``SeedSequence(random_seed).spawn(replications)``: replication ``k`` gets the same
    stream whatever the number of replications asked for.
    """
    return np.random.SeedSequence(random_seed).spawn(replications)


def child_seeds(ss: np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """The first ``n`` children of ``ss``, as ``ss.spawn(n)`` would give on a fresh
    ``ss``, but without mutating it: the same ``ss`` always yields the same streams."""
    return [np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, i),
                                   pool_size=ss.pool_size) for i in range(n)]


def iter_poisson_arrivals(rng: np.random.Generator, rate_per_s: float, horizon_s: float,
                          block: int = 1 << 20):
    """Arrival times of a Poisson process on ``[0, horizon_s)``, ``block`` gaps at a time.

    Gaps are exponential and accumulated sequentially (``t_i = t_{i-1} + gap_i``, as an
    event loop would); the values do not depend on ``block``, only the pieces do.
    """
    return _iter_renewal(rng, lambda n: rng.exponential(1.0 / rate_per_s, n), horizon_s,
                         block)


def poisson_arrivals(rng: np.random.Generator, rate_per_s: float,
                     horizon_s: float) -> np.ndarray:
    """All arrival times of :func:`iter_poisson_arrivals` in one array."""
    parts = list(iter_poisson_arrivals(rng, rate_per_s, horizon_s))
    return np.concatenate(parts) if parts else np.empty(0)


def _iter_renewal(rng: np.random.Generator, draw_gaps, horizon_s: float, block: int):
    """Arrival times on ``[0, horizon_s)`` of a renewal process whose gaps
    ``draw_gaps(n)`` gives, accumulated sequentially, ``block`` gaps at a time."""
    last = 0.0
    while True:
        gaps = draw_gaps(block)
        gaps[0] += last
        t = np.cumsum(gaps)
        if t[-1] >= horizon_s:
            piece = t[: np.searchsorted(t, horizon_s, side="left")]
            if len(piece):
                yield piece
            return
        yield t
        last = float(t[-1])


def _iter_mmpp(rng: np.random.Generator, workload: Workload, horizon_s: float, block: int):
    """A two-state MMPP on ``[0, horizon_s)``: the state starts from its stationary law
    (burst with probability ``burst_fraction``), each sojourn is exponential, and within a
    sojourn of length ``d`` at rate ``r`` there are Poisson(``r d``) arrivals placed as
    sorted uniforms (the order statistics of a Poisson process)."""
    calm, burst, up, down = workload.arrival.mmpp_rates(workload.arrival_rate_per_s)
    in_burst = bool(rng.random() < workload.arrival.burst_fraction)
    t, pieces, count = 0.0, [], 0
    while t < horizon_s:
        rate, leave = (burst, down) if in_burst else (calm, up)
        d = float(rng.exponential(1.0 / leave))
        end = min(t + d, horizon_s)
        n = int(rng.poisson(rate * (end - t)))
        if n:
            pieces.append(np.sort(t + rng.uniform(0.0, end - t, n)))
            count += n
        if count >= block:
            yield np.concatenate(pieces)
            pieces, count = [], 0
        t, in_burst = t + d, not in_burst
    if pieces:
        yield np.concatenate(pieces)


def iter_arrivals(rng: np.random.Generator, workload: Workload, horizon_s: float,
                  block: int = 1 << 20):
    """Arrival times on ``[0, horizon_s)`` of the workload's open-loop process, in pieces.

    ``poisson``: exponential gaps (:func:`iter_poisson_arrivals`); ``gamma``: Gamma gaps
    of shape ``1 / cv^2`` and mean ``1 / rate`` (so their coefficient of variation is
    ``cv``); ``mmpp``: :func:`_iter_mmpp`. A closed loop has no arrival stream.
    """
    a, rate = workload.arrival, workload.arrival_rate_per_s
    if a.process == "poisson":
        return iter_poisson_arrivals(rng, rate, horizon_s, block)
    if a.process == "gamma":
        shape = 1.0 / a.cv**2
        return _iter_renewal(rng, lambda n: rng.gamma(shape, 1.0 / (rate * shape), n),
                             horizon_s, block)
    if a.process == "mmpp":
        return _iter_mmpp(rng, workload, horizon_s, block)
    raise ValueError(f"arrival.process = {a.process!r}: a closed loop has no arrival stream")


def arrivals(rng: np.random.Generator, workload: Workload, horizon_s: float) -> np.ndarray:
    """All arrival times of :func:`iter_arrivals` in one array."""
    parts = list(iter_arrivals(rng, workload, horizon_s))
    return np.concatenate(parts) if parts else np.empty(0)


def request_streams(seed: np.random.SeedSequence | int
                    ) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """The generators of a synthetic stream's arrivals, prompt and output lengths: the
    first three children of ``seed``, so changing one law never shifts another's draws."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return tuple(np.random.default_rng(s) for s in child_seeds(ss, 3))


def generate_requests(workload: Workload, sim_seconds: float,
                      seed: np.random.SeedSequence | int) -> Requests:
    """A synthetic stream: the workload's arrivals on ``[0, sim_seconds)``, independent
    tokens (generators from :func:`request_streams`)."""
    rng_a, rng_p, rng_o = request_streams(seed)
    times = arrivals(rng_a, workload, sim_seconds)
    prompt, output = draw_tokens(workload, rng_p, rng_o, len(times))
    return Requests._trusted(times, prompt, output)


def request_pieces(workload: Workload, sim_seconds: float,
                   seed: np.random.SeedSequence | int, block: int = 1 << 20
                   ) -> Iterator[Requests]:
    """:func:`generate_requests`'s stream, ``block`` requests at a time (the same numbers:
    each law draws sequentially from its own generator)."""
    rng_a, rng_p, rng_o = request_streams(seed)
    for times in iter_arrivals(rng_a, workload, sim_seconds, block):
        yield Requests._trusted(times, *draw_tokens(workload, rng_p, rng_o, len(times)))


#: Draws of at least this many requests fill prompts and outputs on two threads.
PARALLEL_FROM = 1 << 16


def background() -> ThreadPoolExecutor:
    """The one worker thread this package lends long array work to (numpy's random
    fills, partitions and sums release the GIL, so on two cores two of them overlap)."""
    global _worker
    if _worker is None:
        _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ttft")
    return _worker


_worker: ThreadPoolExecutor | None = None


def _forget_worker() -> None:
    """In a forked child the parent's worker thread does not exist, and a task given to
    its executor would wait for ever: the child makes its own on demand."""
    global _worker
    _worker = None


os.register_at_fork(after_in_child=_forget_worker)


def draw_tokens(workload: Workload, rng_prompt: np.random.Generator,
                rng_output: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` prompt and ``n`` output lengths (float64), each from its own generator.

    From :data:`PARALLEL_FROM` requests on the prompts are drawn on a worker thread
    while this one draws the outputs: each generator is used by one thread, so the
    numbers are the same either way.
    """
    if n < PARALLEL_FROM:
        return (workload.prompt_tokens.sample_float(rng_prompt, n),
                workload.output_tokens.sample_float(rng_output, n))
    prompt = background().submit(workload.prompt_tokens.sample_float, rng_prompt, n)
    output = workload.output_tokens.sample_float(rng_output, n)
    return prompt.result(), output


def _pick(row_keys, wanted: tuple[str, ...], path: str) -> str:
    for k in wanted:
        if k in row_keys:
            return k
    raise ValueError(f"trace {path!r}: no column {' or '.join(wanted)}")


def load_trace(path: str | Path) -> Requests:
    """Read a trace file: CSV with a header, or JSON.

    Columns ``arrival_s, prompt_tokens, output_tokens``, or DistServe's JSON schema
    ``[{"start_time": ..., "prompt_len": ..., "output_len": ...}, ...]``. JSON may also be
    one object of three lists. A shipped trace by name (``azure_conv``, ``azure_code``:
    :mod:`simulation.traces`) reads its file.
    """
    from .traces import trace_path

    p = trace_path(str(path))
    if not p.is_file():
        raise ValueError(f"trace = {str(path)!r}: no such file")
    if p.suffix.lower() == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, dict):
            cols = data
        elif isinstance(data, list) and data and isinstance(data[0], dict):
            keys = data[0].keys()
            names = [_pick(keys, w, str(path)) for w in (_ARRIVAL_KEYS, _PROMPT_KEYS,
                                                          _OUTPUT_KEYS)]
            cols = {k: [row[k] for row in data] for k in names}
        else:
            raise ValueError(f"trace {str(path)!r}: must be a JSON list of objects "
                             "or an object of lists")
    else:
        with p.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise ValueError(f"trace {str(path)!r}: no rows")
        cols = {k: [r[k] for r in rows] for k in rows[0] if k is not None}
    a, pr, ou = (_pick(cols.keys(), w, str(path)) for w in (_ARRIVAL_KEYS, _PROMPT_KEYS,
                                                             _OUTPUT_KEYS))
    # CSV rows count from 2 (the header is row 1); JSON entries from 1
    first = 1 if p.suffix.lower() == ".json" else 2
    arrays = [_numbers(cols[k], k, str(path), first) for k in (a, pr, ou)]
    try:
        return Requests(*arrays)
    except ValueError as exc:
        raise ValueError(f"trace {str(path)!r}: {exc}") from None


def _numbers(values: list, column: str, path: str, first_row: int) -> np.ndarray:
    """A trace column as floats; a bad cell is named by row and column."""
    out = np.empty(len(values))
    what = "row" if first_row == 2 else "entry"
    for i, v in enumerate(values):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"trace {path!r}: {what} {i + first_row}, column {column} = "
                             f"{v!r}: not a number") from None
        if not math.isfinite(x) or x < 0 or (column not in _ARRIVAL_KEYS and x <= 0):
            need = ">= 0 (s)" if column in _ARRIVAL_KEYS else "> 0 (tokens)"
            raise ValueError(f"trace {path!r}: {what} {i + first_row}, column {column} = "
                             f"{v!r}: must be a finite number {need}")
        out[i] = x
    return out


class ClosedLoop:
    """The requests of a closed loop: ``concurrency`` clients, each sending its next
    request when its last one completes, after an exponential think time of mean
    ``think_time_s`` (none when 0). Arrivals stop at ``sim_seconds``.

    Token counts are drawn in request order from their own streams (as
    :func:`generate_requests` draws them), ``BLOCK`` at a time; think times from a third.
    """

    BLOCK = 4096

    def __init__(self, workload: Workload, sim_seconds: float,
                 seed: np.random.SeedSequence | int) -> None:
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        think_ss, prompt_ss, output_ss = child_seeds(ss, 3)
        self.workload = workload
        self.clients = workload.arrival.concurrency
        self.think_mean_s = workload.arrival.think_time_s
        self.horizon_s = sim_seconds
        self._rng_think = np.random.default_rng(think_ss)
        self._rng_prompt = np.random.default_rng(prompt_ss)
        self._rng_output = np.random.default_rng(output_ss)
        self._prompt: list[float] = []
        self._output: list[float] = []

    def tokens(self, i: int) -> tuple[float, float]:
        """Prompt and output tokens of the ``i``-th request sent."""
        while i >= len(self._prompt):
            p, o = draw_tokens(self.workload, self._rng_prompt, self._rng_output, self.BLOCK)
            self._prompt += p.tolist()
            self._output += o.tolist()
        return self._prompt[i], self._output[i]

    def think_s(self) -> float:
        """A client's pause before its next request."""
        if self.think_mean_s == 0.0:
            return 0.0
        return float(self._rng_think.exponential(self.think_mean_s))
