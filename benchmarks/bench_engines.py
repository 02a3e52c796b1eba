"""Requests per second of each engine and architecture, and how cost grows with size.

    python benchmarks/bench_engines.py [--repeats 3] [--max-simpy 100000] [--max-fast 10000000]
                                       [--processes] [--sweep]

Whole-run cost of ``simulation.simulate`` (random draws, engine, summary statistics; no
per-request records kept), at the default workload with the arrival rate set for offered
load about 0.8 on the busiest pool. Medians of repeated runs; the fast/SimPy ratio is
measured in the same process at the sizes both run. The first fast call compiles the
numba kernel (or loads it from the on-disk cache); that call is timed apart, and the
in-process runs use the compiled loop throughout.

``--processes`` also times whole processes (``python -m simulation`` for 200k requests,
each engine; start-up, imports and config composition included: what a user waits for),
and ``--sweep`` the default ``python -m validate +sweep=rates`` (run in a temporary
folder). Peak memory of a child process is its maximum resident set size.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np

from analytic import saturation_rate_per_s
from simulation import simulate
from simulation.fast import compiled_kernel
from spec import DisaggregatedCluster, MonolithicCluster, default_config


def run(cfg, cluster, engine: str) -> float:
    t0 = time.perf_counter()
    simulate(cfg, cluster, engine=engine, keep_requests=False, progress=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-simpy", type=int, default=100_000)
    ap.add_argument("--max-fast", type=int, default=10_000_000)
    ap.add_argument("--processes", action="store_true", help="time whole processes too")
    ap.add_argument("--sweep", action="store_true", help="time the default rates sweep")
    args = ap.parse_args()

    t0 = time.perf_counter()
    compiled_kernel()(np.zeros(2), np.ones(2), np.zeros(1))
    print(f"first compiled call (import numba, compile or load the cache): "
          f"{time.perf_counter() - t0:.2f} s\n")

    base = default_config()
    clusters = {"mono": base.cluster_mono, "disagg": base.cluster_disagg}
    rates = {"mono": 7.2, "disagg": 4.3}  # offered load ~0.8 on the busiest pool
    print(f"{'mode':<8}{'requests':>11}{'engine':>8}{'median s':>10}{'req/s':>14}"
          f"{'fast/simpy':>12}")
    sizes = [10**k for k in range(4, 8) if 10**k <= args.max_fast]
    for mode, cluster in clusters.items():
        for n in sizes:
            horizon = n / rates[mode]
            cfg = replace(base, sim_seconds=horizon, warmup_seconds=0.0,
                          workload=base.workload.with_rate(rates[mode]))
            med = {}
            for engine in ("simpy", "fast"):
                if engine == "simpy" and n > args.max_simpy:
                    continue
                med[engine] = statistics.median(run(cfg, cluster, engine)
                                                for _ in range(args.repeats))
                ratio = (f"{med['simpy'] / med['fast']:>11.1f}x"
                         if engine == "fast" and "simpy" in med else "")
                print(f"{mode:<8}{n:>11,}{engine:>8}{med[engine]:>10.3f}"
                      f"{n / med[engine]:>14,.0f}{ratio:>12}")

    print("\ncluster size at load 0.8, 10^6 requests, fast engine")
    print(f"{'GPUs':>6}{'mono req/s':>14}{'disagg req/s':>14}")
    for gpus in (1, 4, 16, 64, 256, 1024, 4096):
        row = []
        for mode in ("mono", "disagg"):
            if mode == "mono":
                cl = MonolithicCluster(gpus, 8000.0, 2000.0)
            else:
                c1 = max(1, gpus // 4)
                cl = DisaggregatedCluster(c1, max(1, gpus - c1), 8000.0, 2000.0)
            rate = 0.8 * saturation_rate_per_s(base.workload, cl)
            cfg = replace(base, sim_seconds=1e6 / rate, warmup_seconds=0.0,
                          workload=base.workload.with_rate(rate))
            row.append(1e6 / statistics.median(run(cfg, cl, "fast")
                                               for _ in range(args.repeats)))
        print(f"{gpus:>6}{row[0]:>14,.0f}{row[1]:>14,.0f}")

    if args.processes:
        print("\nwhole process, python -m simulation sim_seconds=100000 (200k requests)")
        med = {}
        for engine in ("fast", "simpy"):
            cmd = [sys.executable, "-m", "simulation", f"engine={engine}",
                   "sim_seconds=100000"]
            walls = [whole_process(cmd)[0] for _ in range(args.repeats)]
            med[engine] = statistics.median(walls)
            print(f"  {engine:<6}{med[engine]:>8.2f} s  (runs: "
                  f"{', '.join(f'{w:.2f}' for w in walls)})")
        print(f"  fast / simpy: {med['fast'] / med['simpy']:.3f}")
    if args.sweep:
        with tempfile.TemporaryDirectory() as tmp:
            wall, peak = whole_process([sys.executable, "-m", "validate", "+sweep=rates",
                                        f"hydra.sweep.dir={tmp}/sweep"], cwd=tmp)
        print(f"\npython -m validate +sweep=rates: {wall:.1f} s, "
              f"peak {peak / 2**30:.2f} GiB (largest child so far)")


def whole_process(cmd: list[str], cwd: str | None = None) -> tuple[float, float]:
    """Wall seconds of one child process, and the largest peak RSS (bytes) of any child
    waited for so far (the kernel keeps only that maximum)."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()} if cwd else None
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=cwd, env=env)
    wall = time.perf_counter() - t0
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024.0


if __name__ == "__main__":
    main()
