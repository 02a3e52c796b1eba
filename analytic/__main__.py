"""``python -m analytic``: the closed-form estimate of one point (a table on a terminal,
JSON when piped or with ``output=json``).

Takes the same config and overrides as ``python -m simulation``, plus ``method=``::

    python -m analytic mode=both
    python -m analytic mode=disagg arrival.rate_per_s=4 method=whitt93
    python -m analytic scenario=distserve_opt13b mode=mono   # batched, prefill-priority
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from analytic import estimate
from conf.schema import emit, exit_on_bad_input, register, to_sim_config
from spec import config_to_mapping

register()


@hydra.main(config_path="pkg://conf", config_name="analytic", version_base="1.3")
@exit_on_bad_input
def main(cfg: DictConfig) -> None:
    config = to_sim_config(cfg)
    out = {"mode": config.mode, "method": cfg.method, "config": config_to_mapping(config)}
    if config.serving == "batched":
        from analytic.batched import batched_estimate

        results = {c.mode: batched_estimate(config.workload, c, config.slo)
                   for c in config.clusters()}
        out["method"] = results[config.clusters()[0].mode]["method"]
    else:
        import warnings

        from analytic.mdc import ExactFallbackWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ExactFallbackWarning)
            shape = {k: cfg[k] for k in ("wait_law", "linking") if cfg[k] is not None}
            results = {c.mode: estimate(config.workload, c, cfg.method, **shape).summary(
                config.quantiles) for c in config.clusters()}
        notes = list(dict.fromkeys(str(w.message) for w in caught
                                   if issubclass(w.category, ExactFallbackWarning)))
        for w in caught:  # anything else as Python would show it
            if not issubclass(w.category, ExactFallbackWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        if notes:
            out["notes"] = notes
            for n in notes:
                print(f"note: {n}", file=sys.stderr)
    notes = out.get("notes", [])
    if config.mode == "both":
        out.update(results)
        mono, dis = results["mono"], results["disagg"]
        out["relative_difference"] = {
            k: (dis[k] - mono[k]) / mono[k] for k in mono
            if k.endswith(("_ttft_s", "_tpot_s")) and k in dis
            and mono[k] not in (0, float("inf"))}
    else:
        out["estimate"] = results[config.mode]
    first = results[config.clusters()[0].mode]
    shape = "".join(f", {first[k]} {word}" for k, word in (("wait_law", "wait"),
                                                            ("linking", "linking"))
                    if k in first)
    emit(cfg, out, results, f"python -m analytic: serving {config.serving}, method "
         f"{out['method']}{shape}, arrival rate {config.workload.arrival_rate_per_s:g} "
         "req/s", notes)


if __name__ == "__main__":
    main()
