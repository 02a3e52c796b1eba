"""Closed-form TTFT: M/G/c and tandem (QNA) queueing approximations, vectorised.

The fast witness: imports ``spec`` only, never ``simulation``. Every formula names its
source and where it is known to be weak; ``rho >= 1`` gives ``inf``, never a wrong
finite number.
"""

from .mdc import MDcWait, mdc_wait
from .queues import (
    DEFAULT_METHOD,
    METHODS,
    allen_cunneen_wait,
    conditional_wait_scv,
    cosmetatos_mdc_wait,
    cosmetatos_wait,
    delay_probability,
    departure_scv,
    erlang_c,
    kimura_wait,
    linked_arrival_scv,
    mean_wait,
    mmc_wait,
    pk_wait,
    relaxation_time,
    wait_quantile,
    whitt93_wait,
)
from .ttft import (
    DEFAULT_LINKING,
    DEFAULT_WAIT_LAW,
    LINKINGS,
    WAIT_LAWS,
    TTFTEstimate,
    estimate,
    estimate_grid,
    zero_load_ttft_s,
)

__all__ = [
    "DEFAULT_LINKING",
    "DEFAULT_METHOD",
    "DEFAULT_WAIT_LAW",
    "LINKINGS",
    "METHODS",
    "WAIT_LAWS",
    "MDcWait",
    "TTFTEstimate",
    "allen_cunneen_wait",
    "conditional_wait_scv",
    "cosmetatos_mdc_wait",
    "cosmetatos_wait",
    "delay_probability",
    "departure_scv",
    "erlang_c",
    "estimate",
    "estimate_grid",
    "kimura_wait",
    "linked_arrival_scv",
    "mdc_wait",
    "mean_wait",
    "mmc_wait",
    "pk_wait",
    "relaxation_time",
    "wait_quantile",
    "whitt93_wait",
    "zero_load_ttft_s",
]

from .capacity import (  # noqa: E402
    SplitChoice,
    best_split,
    max_rate,
    min_gpus,
    saturation_rate_per_s,
)

__all__ += ["SplitChoice", "best_split", "max_rate", "min_gpus", "saturation_rate_per_s"]

from .batched import (  # noqa: E402  # noqa: E402
    batch_prefill_capacity,
    batch_prefill_chain_ttft,
    batch_prefill_random_ttft,
    batch_prefill_ttft,
    batch_prefill_ttft_moment2,
    batched_estimate,
    chunk_counts,
    chunked_law,
    colocated_chunked,
    colocated_prefill_priority,
    colocated_slo,
    prefill_affine,
    prefill_cost_central3,
    prefill_cost_laplace,
    prefill_cost_moments,
    prefill_costs,
    prefill_priority_law,
)
from .batched_disagg import (  # noqa: E402
    disaggregated_batched,
    stability_limits,
    ttft_law,
)
from .goodput import goodput, slo_attainment_at  # noqa: E402

__all__ += ["batch_prefill_capacity", "batch_prefill_chain_ttft", "batch_prefill_random_ttft",
            "batch_prefill_ttft", "batch_prefill_ttft_moment2", "batched_estimate",
            "chunk_counts", "colocated_chunked", "colocated_prefill_priority",
            "disaggregated_batched", "prefill_affine",
            "prefill_cost_central3", "prefill_cost_laplace", "prefill_cost_moments",
            "prefill_costs", "stability_limits", "ttft_law", "chunked_law", "colocated_slo",
            "prefill_priority_law", "colocated_law", "goodput", "slo_attainment_at"]
