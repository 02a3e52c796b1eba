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
folder). Peak memory of a child process is its own maximum resident set size.
"""

from __future__ import annotations

import argparse
import os
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

    # whole processes first, while this process is small (forking it is cheap)
    if args.processes:
        print("\nwhole process, python -m simulation sim_seconds=100000 (200k requests)")
        med = {}
        for engine in ("fast", "simpy"):
            runs = [whole_process(["simulation", f"engine={engine}", "sim_seconds=100000"])
                    for _ in range(args.repeats)]
            walls = [w for w, _ in runs]
            med[engine] = statistics.median(walls)
            print(f"  {engine:<6}{med[engine]:>8.2f} s  (runs: "
                  f"{', '.join(f'{w:.2f}' for w in walls)}; peak "
                  f"{max(p for _, p in runs) / 2**20:.0f} MiB)")
        print(f"  fast / simpy: {med['fast'] / med['simpy']:.3f}")
    if args.sweep:
        with tempfile.TemporaryDirectory() as tmp:
            wall, peak = whole_process(["validate", "+sweep=rates",
                                        f"hydra.sweep.dir={tmp}/sweep"], cwd=tmp)
        print(f"\npython -m validate +sweep=rates: {wall:.1f} s, peak {peak / 2**20:.0f} MiB")

    t0 = time.perf_counter()
    compiled_kernel()(np.zeros(2), np.ones(2), np.zeros(1))
    print(f"first compiled call (import numba, compile or load the cache): "
          f"{time.perf_counter() - t0:.2f} s\n")

    base = default_config()
    floor = rng_floor_s(base, 1_000_000, args.repeats)
    print(f"random draws alone, 10^6 requests (one exponential gap and two lognormal "
          f"lengths each, one thread): {floor:.3f} s = {1e6 / floor:,.0f} req/s\n")
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

def rng_floor_s(base, n: int, repeats: int) -> float:
    """Median seconds to draw ``n`` requests' random numbers alone, as the engine does
    (numpy's exponential and lognormal fills, one generator each, one thread)."""
    w = base.workload
    rngs = [np.random.default_rng(k) for k in range(3)]

    def once() -> float:
        t0 = time.perf_counter()
        rngs[0].exponential(1.0, n)
        rngs[1].lognormal(w.prompt_tokens.mu, w.prompt_tokens.sigma_log, n)
        rngs[2].lognormal(w.output_tokens.mu, w.output_tokens.sigma_log, n)
        return time.perf_counter() - t0

    return statistics.median(once() for _ in range(max(repeats, 5)))


#: Runs ``python -m MODULE ARGS`` as ``-m`` would, then reports the process's own peak
#: resident set size on stderr: VmHWM from /proc (reset by exec; ru_maxrss is not, and
#: a child forked from this large process would report this process's size).
_WRAP = ("import atexit, resource, runpy, sys\n"
         "def _peak_kb():\n"
         "    try:\n"
         "        with open('/proc/self/status') as f:\n"
         "            return next(int(x.split()[1]) for x in f if x.startswith('VmHWM:'))\n"
         "    except OSError:\n"
         "        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
         "atexit.register(lambda: sys.stderr.write(f'\\npeak_rss_kb={_peak_kb()}\\n'))\n"
         "sys.argv = sys.argv[1:]\n"
         "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n")


def whole_process(module_args: list[str], cwd: str | None = None) -> tuple[float, float]:
    """Wall seconds and peak resident bytes of ``python -m MODULE ARGS`` in a child."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()} if cwd else None
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAP, *module_args], check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          cwd=cwd, env=env)
    wall = time.perf_counter() - t0
    peak = [line for line in proc.stderr.splitlines() if line.startswith("peak_rss_kb=")]
    return wall, float(peak[-1].split("=")[1]) * 1024.0


if __name__ == "__main__":
    main()
