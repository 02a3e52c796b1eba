"""Simulated requests per wall-clock second of the SimPy engine, against textbook SimPy.

Runs, in one process and interleaved, (a) a textbook SimPy M/G/c model and a textbook
two-stage tandem (the reference shapes), and (b) this project's SimPy path for both
architectures, on about 200k requests each at the default workload. Reports medians of
repeated runs and the ratio project / textbook, since these machines are noisy.

    python benchmarks/bench_simpy.py [--requests 200000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import simpy

from simulation import generate_requests, run_requests
from spec import default_config


def textbook_mgc(arrival_s, service_s, servers):
    env = simpy.Environment()
    pool = simpy.Resource(env, servers)
    gaps = np.diff(arrival_s, prepend=0.0).tolist()
    serv = service_s.tolist()

    def customer(i):
        with pool.request() as req:
            yield req
            yield env.timeout(serv[i])

    def source():
        for i, g in enumerate(gaps):
            yield env.timeout(g)
            env.process(customer(i))

    env.process(source())
    env.run()


def textbook_tandem(arrival_s, s1, c1, s2, c2):
    env = simpy.Environment()
    p1, p2 = simpy.Resource(env, c1), simpy.Resource(env, c2)
    gaps = np.diff(arrival_s, prepend=0.0).tolist()
    a, b = s1.tolist(), s2.tolist()

    def customer(i):
        with p1.request() as req:
            yield req
            yield env.timeout(a[i])
        with p2.request() as req:
            yield req
            yield env.timeout(b[i])

    def source():
        for i, g in enumerate(gaps):
            yield env.timeout(g)
            env.process(customer(i))

    env.process(source())
    env.run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    cfg = default_config()
    # rate so that ~args.requests arrive in sim_seconds; loads ~0.8 on the weaker pool
    rate = 4.3
    horizon = args.requests / rate
    req = generate_requests(cfg.workload.with_rate(rate), horizon, 1)
    n = len(req)
    mono, dis = cfg.cluster_mono, cfg.cluster_disagg
    svc_mono = req.prompt_tokens / mono.prefill_tokens_per_s + \
        req.output_tokens / mono.decode_tokens_per_s
    s1 = req.prompt_tokens / dis.prefill_tokens_per_s
    s2 = req.output_tokens / dis.decode_tokens_per_s

    cases = {
        "textbook M/G/c": lambda: textbook_mgc(req.arrival_s, svc_mono, mono.num_gpus),
        "project mono": lambda: run_requests(req, mono, engine="simpy"),
        "textbook tandem": lambda: textbook_tandem(req.arrival_s, s1, dis.prefill_gpus, s2,
                                                   dis.decode_gpus),
        "project disagg": lambda: run_requests(req, dis, engine="simpy"),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{n} requests, {args.repeats} repeats, medians")
    print(f"{'case':<18}{'seconds':>10}{'requests/s':>14}")
    for k, v in med.items():
        print(f"{k:<18}{v:>10.3f}{n / v:>14,.0f}")
    for ours, ref in (("project mono", "textbook M/G/c"), ("project disagg", "textbook tandem")):
        print(f"time ratio {ours} / {ref}: {med[ours] / med[ref]:.2f}")


if __name__ == "__main__":
    main()
