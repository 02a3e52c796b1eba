"""The simulated stability verdict the colocated forms' knee tests share: one OPT-13B
instance (DistServe's fit), roomy (no KV or sequence cap binds), prompts lognormal
(6.0, 0.7), outputs (5.0, 0.8), 3 runs of 16,000 s (warm-up 1,600 s)."""

from simulation import simulate
from spec import config_from_mapping


def opt13b_colocated_stable(rate_per_s: float, policy: str, budget: int) -> bool:
    """The simulation's stability verdict at ``rate_per_s`` for one instance of
    ``policy`` with token budget ``budget``."""
    cfg = config_from_mapping({
        "serving": "batched", "mode": "mono", "sim_seconds": 16000, "warmup_seconds": 1600,
        "replications": 3, "arrival": {"rate_per_s": rate_per_s},
        "prompt_tokens": {"mean": 6.0, "sigma": 0.7, "min_value": 1},
        "output_tokens": {"mean": 5.0, "sigma": 0.8, "min_value": 2},
        "profile": "distserve/opt-13b_tp1",
        "batched_mono": {"instances": 1, "first_token": "prefill",
                         "instance": {"policy": policy, "max_num_batched_tokens": budget,
                                      "max_num_seqs": 10**5, "kv_capacity_tokens": 10**8}}})
    return bool(simulate(cfg, keep_requests=False).stats["stable"])
