"""The batched serving model's engines, side by side in one run.

    python benchmarks/bench_batched.py [--repeats 3] [--seconds 2000] [--skip-hour]

1. DistServe's OPT-13B setting (``scenario=distserve_opt13b``: OPT-13B on A100-80GB,
   two colocated prefill-priority instances, or one prefill + one decode instance) at
   2, 4, 6 and 8 req/s: requests simulated per wall second by the SimPy model and by the
   compiled engine on the same stream (the engine and its per-request bookkeeping, no
   summary), their ratio, and a check that both gave every request the same times.
   The issue's reference: DistServe's own simulator does about 1,000 to 7,000 requests
   per wall second on this machine for OPT-13B at 2 to 8 req/s (not run here).
2. One simulated hour of 16 colocated instances at 80 % load, compiled engine, through
   ``simulation.simulate`` (request draws, engine and summary). The load is 80 % of the
   capacity found by bisecting the rate on the stability verdict (the closed forms that
   will give it exactly are not built yet).

3. ``--stream N``: N requests (10^7 by default with the flag) of DistServe's OPT-13B
   setting at 6 req/s on the 2 colocated instances, streamed (``keep_requests=False``):
   wall time, the largest ring of request slots, and the peak memory numpy reported to
   tracemalloc, per request.

Medians of ``--repeats`` runs; the first compiled call (numba import and cache load, or
compilation after a code change) is timed apart.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
from bench_analytic import timed  # medians of repeated runs (run from this folder)

from simulation import simulate
from simulation.batched import simulate_batched
from simulation.batched_fast import simulate_batched_fast
from simulation.requests import generate_requests
from spec import config_from_mapping
from spec.schema import from_mapping

SCENARIO = {
    "serving": "batched", "mode": "both", "profile": "distserve/opt-13b_tp1",
    "prompt_tokens": {"mode": "log", "mean": 6.0, "sigma": 0.7, "min_value": 1},
    "output_tokens": {"mode": "log", "mean": 5.0, "sigma": 0.8, "min_value": 1},
    "batched_mono": {"instances": 2, "instance": {"policy": "prefill_priority",
                                                  "max_num_batched_tokens": 65536}},
    "batched_disagg": {"prefill": {"policy": "prefill_priority",
                                   "max_num_batched_tokens": 65536}},
}


def _scenario_matches_the_shipped_one() -> None:
    """This dict is conf/scenario/distserve_opt13b.yaml's model part (checked here)."""
    import importlib.resources

    import yaml

    text = (importlib.resources.files("conf") / "scenario" / "distserve_opt13b.yaml").read_text()
    shipped = yaml.safe_load(text)
    ours = from_mapping(SCENARIO)
    theirs = from_mapping({k: v for k, v in shipped.items() if k in SCENARIO})
    assert ours == theirs, "bench_batched.SCENARIO differs from the shipped scenario"


def engines(repeats: int, seconds: float) -> None:
    print(f"## OPT-13B, DistServe's setting: {seconds:g} simulated s, medians of {repeats}\n")
    print("| rate (req/s) | cluster | requests | SimPy req/s | compiled req/s | compiled / SimPy "
          "| same times |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | --- |")
    cfg = config_from_mapping(SCENARIO)
    for rate in (2.0, 4.0, 6.0, 8.0):
        req = generate_requests(cfg.workload.with_rate(rate), seconds, 1)
        for cluster in cfg.clusters():
            slow = timed(lambda c=cluster, r=req: simulate_batched(r, c), repeats)
            fast = timed(lambda c=cluster, r=req: simulate_batched_fast(r, c), repeats)
            a, _ = simulate_batched(req, cluster)
            b, _ = simulate_batched_fast(req, cluster)
            same = all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True)
                       for f in ("first_token_s", "last_token_s", "prefill_start_s"))
            name = "2 colocated" if cluster.mode == "mono" else "1 prefill + 1 decode"
            n = len(req)
            print(f"| {rate:g} | {name} | {n:,} | {n / slow:,.0f} | {n / fast:,.0f} | "
                  f"{slow / fast:.0f}x | {'yes' if same else 'NO'} |")


def capacity(cfg, lo: float, hi: float, steps: int = 8) -> float:
    """The largest stable rate (bisection on the run's stability verdict, 600 s runs)."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        probe = replace(cfg, sim_seconds=600.0, warmup_seconds=60.0,
                        workload=cfg.workload.with_rate(mid))
        if simulate(probe, keep_requests=False).stats["stable"]:
            lo = mid
        else:
            hi = mid
    return lo


def one_hour_of_sixteen(repeats: int) -> None:
    base = config_from_mapping({**SCENARIO, "mode": "mono", "sim_seconds": 3600.0,
                                "warmup_seconds": 300.0,
                                "batched_mono": {"instances": 16}})
    cap = capacity(base, 10.0, 200.0)
    rate = 0.8 * cap
    cfg = replace(base, workload=base.workload.with_rate(rate))
    wall = timed(lambda: simulate(cfg, keep_requests=False), repeats)
    stats = simulate(cfg, keep_requests=False).stats
    print("\n## One simulated hour, 16 colocated OPT-13B instances, compiled engine\n")
    print(f"capacity by bisection: {cap:.1f} req/s; run at 80 %: {rate:.1f} req/s, "
          f"{int(stats['n_requests']):,} requests, utilisation "
          f"{stats['utilisation_colocated']:.2f}, stable {stats['stable']}; "
          f"wall {wall:.2f} s (median of {repeats}; target < 10 s)")


def streamed(n: float) -> None:
    """One streamed run of ``n`` requests: wall time, ring, peak memory a request."""
    import tracemalloc

    from simulation import batched_fast

    cfg = config_from_mapping({**SCENARIO, "mode": "mono", "arrival": {"rate_per_s": 6.0},
                               "warmup_seconds": 100.0, "replications": 1})
    cfg = replace(cfg, sim_seconds=n / 6.0)
    simulate(replace(cfg, sim_seconds=500.0), keep_requests=False)  # compiled first
    rings = []
    grow = batched_fast._State.grow
    batched_fast._State.grow = lambda s: (grow(s), rings.append(s.ri.shape[1]))[0]
    tracemalloc.start()
    t0 = time.perf_counter()
    stats = simulate(cfg, keep_requests=False).stats
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    batched_fast._State.grow = grow
    print(f"\n## {n:,.0f} requests streamed, 2 colocated OPT-13B instances at 6 req/s\n")
    print(f"{int(stats['n_requests']):,} requests ({int(stats['n_measured']):,} measured) in "
          f"{wall:.1f} s ({stats['n_requests'] / wall:,.0f} req/s with draws and summary); "
          f"ring of {max(rings, default=batched_fast.RING):,} slots; peak memory "
          f"{peak / 2**20:,.0f} MiB = {peak / stats['n_requests']:.1f} bytes a request "
          f"(the measured requests' five latencies: 40); mean TTFT "
          f"{stats['mean_ttft_s']:.3f} s, stable {bool(stats['stable'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2000.0)
    ap.add_argument("--skip-hour", action="store_true")
    ap.add_argument("--stream", type=float, nargs="?", const=1e7, default=None,
                    metavar="N", help="also stream N requests (default 10^7)")
    ap.add_argument("--only-stream", action="store_true", help="run only --stream")
    args = ap.parse_args()
    if args.only_stream:
        streamed(args.stream or 1e7)
        return
    _scenario_matches_the_shipped_one()
    from simulation.batched_fast import _compiled

    t0 = time.perf_counter()
    _compiled()
    simulate_batched_fast(generate_requests(config_from_mapping(SCENARIO).workload, 10.0, 0),
                          config_from_mapping(SCENARIO).batched_mono)
    first = time.perf_counter() - t0
    print(f"first compiled call (import, cache load or compile): {first:.2f} s\n")
    engines(args.repeats, args.seconds)
    if not args.skip_hour:
        one_hour_of_sixteen(args.repeats)
    if args.stream:
        streamed(args.stream)


if __name__ == "__main__":
    main()
