"""``python -m simulation``: one simulated point (a table on a terminal, JSON when piped
or with ``output=json``).

Examples::

    python -m simulation                                  # the built-in default
    python -m simulation mode=disagg arrival.rate_per_s=3 sim_seconds=600
    python -m simulation mode=both replications=5         # both architectures, same requests
    python -m simulation scenario=heavy_load_mono dump_ttft=ttft.json
    python -m simulation config=examples/default.yaml arrival.rate_per_s=4
    python -m simulation serving=batched mode=both profile=distserve/opt-13b_tp1
    python -m simulation scenario=distserve_opt13b trace=examples/trace_distserve.json \
        warmup_seconds=0
"""

from __future__ import annotations

import json
import sys

import hydra
import numpy as np
from omegaconf import DictConfig

from conf.schema import emit, exit_on_bad_input, register, to_sim_config
from fileio import atomic_write_text, check_writable
from simulation import compare, simulate, simulate_trace
from simulation.requests import load_trace
from simulation.runner import Comparison
from simulation.traces import time_scaled
from spec import config_to_mapping

register()


def _ttft_list(result) -> list[float]:
    return np.concatenate([r.ttft_s[r.measured] for r in result.records]).tolist()


@hydra.main(config_path="pkg://conf", config_name="config", version_base="1.3")
@exit_on_bad_input
def main(cfg: DictConfig) -> None:
    config = to_sim_config(cfg)
    if cfg.dump_ttft:
        check_writable(cfg.dump_ttft, "dump_ttft")
    if cfg.trace_rate_per_s is not None and cfg.trace is None:
        raise ValueError(f"trace_rate_per_s = {cfg.trace_rate_per_s}: scales a trace; give "
                         "trace=NAME_OR_FILE (azure_conv, azure_code, or a file)")
    if cfg.trace is not None:
        trace = load_trace(cfg.trace)
        if cfg.trace_rate_per_s is not None:
            trace = time_scaled(trace, cfg.trace_rate_per_s)
        results = [simulate_trace(trace, c, warmup_s=config.warmup_seconds,
                                  quantiles=config.quantiles, engine=cfg.engine, slo=config.slo)
                   for c in config.clusters()]
        cmp = Comparison(*results) if config.mode == "both" else None
        res = results[0]
    else:  # per-request records only for dump_ttft: otherwise the bounded-memory path
        keep = bool(cfg.dump_ttft)
        if config.mode == "both":
            cmp = compare(config, keep_requests=keep, engine=cfg.engine, progress=cfg.progress)
        else:
            cmp, res = None, simulate(config, keep_requests=keep, engine=cfg.engine,
                                      progress=cfg.progress)
    if cmp is not None:
        out = {"mode": "both", "engine": cmp.mono.engine, "config": config_to_mapping(config),
               "mono": cmp.mono.stats, "disagg": cmp.disagg.stats,
               "relative_difference": cmp.relative_difference()}
    else:
        out = {"mode": config.mode, "engine": res.engine, "config": config_to_mapping(config),
               "stats": res.stats}
    if cfg.dump_ttft:
        dump = {"mono": _ttft_list(cmp.mono), "disagg": _ttft_list(cmp.disagg)} \
            if cmp is not None else _ttft_list(res)
        atomic_write_text(cfg.dump_ttft, json.dumps(dump))
    columns = {"mono": out["mono"], "disagg": out["disagg"]} if "stats" not in out \
        else {config.mode: out["stats"]}
    source = f"trace {cfg.trace}" if cfg.trace is not None else (
        f"{config.replications} replication(s) of {config.sim_seconds:g} s (warm-up "
        f"{config.warmup_seconds:g} s), seed {config.random_seed}")
    emit(cfg, out, columns, f"python -m simulation: serving {config.serving}, engine "
         f"{out['engine']}, {source}")
    stats = list(columns.values())
    if any(not st.get("n_measured") for st in stats):
        print(f"warning: no request arrived in the measured window [warmup_seconds, "
              f"sim_seconds) = [{config.warmup_seconds:g}, {config.sim_seconds:g}) s: every "
              "statistic is null; lengthen the run or raise the rate", file=sys.stderr)


if __name__ == "__main__":
    main()
