"""The SimPy model of monolithic and disaggregated serving (DESIGN.md, "The model").

Each request is one SimPy process. Pools are :class:`simpy.Resource` (FIFO). The
processes only record times into preallocated lists; metrics are computed afterwards in
numpy (:mod:`simulation.metrics`), so the event loop does nothing it need not do.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from spec import DisaggregatedCluster, MonolithicCluster

from .requests import Requests

if TYPE_CHECKING:
    import simpy


@dataclass(frozen=True)
class StageTimes:
    """When each request reached and entered each pool (seconds).

    For a monolithic run the decode arrays are empty: the GPU taken at
    ``prefill_start_s`` is held through the whole decode.
    """

    prefill_start_s: np.ndarray
    decode_ready_s: np.ndarray
    decode_start_s: np.ndarray


def _source(env: simpy.Environment, arrival_s: list[float],
            spawn: Callable[[int], Generator]) -> Generator:
    """Start request ``i`` at ``arrival_s[i]``.

    ``timeout(t - now)`` lands exactly on ``t`` (Sterbenz) whenever ``now >= t / 2``,
    so arrival instants are the given ones, not re-accumulated gaps.
    """
    for i, t in enumerate(arrival_s):
        delay = t - env.now
        if delay > 0.0:
            yield env.timeout(delay)
        env.process(spawn(i))


def _run(env: simpy.Environment, until_s: float, progress: bool, label: str) -> None:
    """Run to exhaustion, in chunks of simulated time when a progress bar is wanted."""
    if not progress:
        env.run()
        return
    from tqdm import tqdm

    steps = 100
    with tqdm(total=steps, desc=label, unit="%", leave=False) as bar:
        for k in range(1, steps + 1):
            env.run(until=until_s * k / steps)
            bar.update(1)
    env.run()


def simulate_mono(requests: Requests, cluster: MonolithicCluster, *,
                  progress: bool = False) -> StageTimes:
    """Monolithic serving: one FIFO pool of ``num_gpus``; each request holds a GPU for
    ``P / prefill_rate + O / decode_rate``."""
    import simpy  # here: the fast engine's processes need not import it

    env = simpy.Environment()
    gpus = simpy.Resource(env, capacity=cluster.num_gpus)
    hold = (requests.prompt_tokens / cluster.prefill_tokens_per_s
            + requests.output_tokens / cluster.decode_tokens_per_s).tolist()
    n = len(requests)
    start = [0.0] * n

    def customer(i: int) -> Generator:
        with gpus.request() as slot:
            yield slot
            start[i] = env.now
            yield env.timeout(hold[i])

    env.process(_source(env, requests.arrival_s.tolist(), customer))
    horizon = float(requests.arrival_s[-1]) if n else 0.0
    _run(env, horizon, progress, "simulate mono")
    empty = np.empty(0)
    return StageTimes(np.asarray(start), empty, empty)


def simulate_disagg(requests: Requests, cluster: DisaggregatedCluster, *,
                    progress: bool = False) -> StageTimes:
    """Disaggregated serving: prefill pool, optional KV transfer, then decode pool held
    for the whole decode."""
    import simpy

    env = simpy.Environment()
    prefill_pool = simpy.Resource(env, capacity=cluster.prefill_gpus)
    decode_pool = simpy.Resource(env, capacity=cluster.decode_gpus)
    prefill = (requests.prompt_tokens / cluster.prefill_tokens_per_s).tolist()
    transfer = (requests.prompt_tokens * cluster.kv_transfer_s_per_token).tolist()
    decode = (requests.output_tokens / cluster.decode_tokens_per_s).tolist()
    with_transfer = cluster.kv_transfer_s_per_token > 0.0
    n = len(requests)
    p_start, d_ready, d_start = [0.0] * n, [0.0] * n, [0.0] * n

    def customer(i: int) -> Generator:
        with prefill_pool.request() as slot:
            yield slot
            p_start[i] = env.now
            yield env.timeout(prefill[i])
        if with_transfer:
            yield env.timeout(transfer[i])
        d_ready[i] = env.now
        with decode_pool.request() as slot:
            yield slot
            d_start[i] = env.now
            yield env.timeout(decode[i])

    env.process(_source(env, requests.arrival_s.tolist(), customer))
    horizon = float(requests.arrival_s[-1]) if n else 0.0
    _run(env, horizon, progress, "simulate disagg")
    return StageTimes(np.asarray(p_start), np.asarray(d_ready), np.asarray(d_start))
