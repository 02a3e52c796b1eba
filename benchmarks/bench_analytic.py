"""Speed of the closed forms: grid sizes the issue names, medians of repeated runs.

    python benchmarks/bench_analytic.py [--repeats 5]

Cases (default workload; one process; numpy's element-wise work is single-threaded):
mean TTFT at 10^6 monolithic grid points (10,000 rates x 100 cluster sizes); the
P50/P90/P99 set at 10^4 points, monolithic and disaggregated; the exact M/D/c law at
one point with 64 servers (rho 0.8 and 0.95, cache cleared each time); the batched
disaggregated form at DistServe's OPT-13B scenario, one point with and without its
stability limits (the limits' search evaluates the decode pool hundreds of times); the
colocated forms at its 2 req/s per instance (prefill-priority on the chain of steps and
on its moments, chunked with a 2,048-token budget), alone and in the estimate with its
limits.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np

import analytic
from analytic.mdc import mdc_wait
from spec import default_config


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cfg = default_config()
    wl, mono, dis = cfg.workload, cfg.cluster_mono, cfg.cluster_disagg
    analytic.estimate(wl, mono).summary()  # warm the token-law caches (exact pmf sums)
    analytic.estimate(wl, dis).summary()

    r6, g6 = np.meshgrid(np.linspace(0.5, 30.0, 10_000), np.arange(4, 104))
    r4, g4 = np.meshgrid(np.linspace(0.5, 30.0, 100), np.arange(4, 104))

    def mdc(rho):
        def run():
            mdc_wait.cache_clear()
            return mdc_wait(rho * 64, 1.0, 64).mean
        return run

    from pathlib import Path

    from analytic.batched_disagg import disaggregated_batched
    from spec import config_from_mapping
    from spec.loader import read_yaml_mapping

    scenario = read_yaml_mapping(Path(__file__).resolve().parent.parent / "conf" / "scenario"
                                 / "distserve_opt13b.yaml")
    batched = config_from_mapping(scenario)
    b_wl, b_dis = batched.workload, batched.clusters()[1]
    analytic.batched_estimate(b_wl, b_dis)  # warm the step table's cache
    b_mono = batched.clusters()[0]
    b_chunked = replace(b_mono, instance=replace(b_mono.instance, policy="chunked"))
    p_tok, o_tok, prof = b_wl.prompt_tokens, b_wl.output_tokens, b_mono.instance.step_profile

    cases = {
        "batched disagg, one point, no limits": lambda: disaggregated_batched(
            4.0, b_wl.prompt_tokens, b_wl.output_tokens, b_dis, batched.slo),
        "batched disagg, one point with limits": lambda: analytic.batched_estimate(
            b_wl, b_dis, batched.slo),
        "batched colocated prefill-priority, chain": lambda: analytic.
        colocated_prefill_priority(2.0, p_tok, o_tok, prof),
        "batched colocated prefill-priority, moments": lambda: analytic.
        colocated_prefill_priority(2.0, p_tok, o_tok, prof, chain=False),
        "batched colocated chunked, one point": lambda: analytic.colocated_chunked(
            2.0, p_tok, o_tok, prof, max_num_batched_tokens=2048),
        "batched colocated pp, with limits": lambda: analytic.batched_estimate(b_wl, b_mono),
        "batched colocated chunked, with limits": lambda: analytic.batched_estimate(
            b_wl, b_chunked),
        "mean TTFT, 10^6 mono points": lambda: analytic.estimate(
            wl, mono, arrival_rate_per_s=r6, num_gpus=g6).mean_ttft_s,
        "P50/P90/P99, 10^4 mono points": lambda: analytic.estimate(
            wl, mono, arrival_rate_per_s=r4, num_gpus=g4).quantile([0.5, 0.9, 0.99]),
        "P50/P90/P99, 10^4 disagg points": lambda: analytic.estimate(
            wl, dis, arrival_rate_per_s=r4, prefill_gpus=g4 // 2,
            decode_gpus=g4 - g4 // 2).quantile([0.5, 0.9, 0.99]),
        "exact M/D/64 at rho 0.8, one point": mdc(0.8),
        "exact M/D/64 at rho 0.95, one point": mdc(0.95),
    }
    print(f"{'case':<46}{'median s':>10}")
    for name, fn in cases.items():
        print(f"{name:<46}{timed(fn, args.repeats):>10.4f}")


if __name__ == "__main__":
    main()
