"""Goodput from the batched closed forms: the largest arrival rate at which a cluster's
predicted SLO attainment still meets the target (DistServe's definition, OSDI 2024, sec.
2: the rate at which ``attainment`` of requests meet both the TTFT and TPOT bounds).

One definition for every batched cluster: :func:`slo_attainment_at` prices the shares at a
rate (:func:`analytic.batched.colocated_slo` per colocated instance at ``rate / k``;
:func:`analytic.batched_disagg.disaggregated_slo` for a disaggregated cluster), and
:func:`goodput` bisects on it. Imports ``spec`` only, never ``simulation``.
"""

from __future__ import annotations

import math

from .batched import colocated_law, colocated_slo, largest_rate, poisson_arrivals
from .batched_slo import SLO_KEYS

#: Bisection steps after the bracket is found: 2^-16 of the bracket (under 1e-4 of the
#: goodput), far finer than the forms' accuracy.
GOODPUT_STEPS = 16


def slo_attainment_at(rate_per_s: float, workload, cluster, slo) -> dict[str, float]:
    """The predicted shares of requests meeting ``slo`` (``slo_attainment_ttft``,
    ``slo_attainment_tpot``, ``slo_attainment``) at total arrival rate ``rate_per_s``;
    all 0 where the form calls the point unstable or past a cap it does not model (a
    colocated instance past a cap, :func:`analytic.batched.past_caps`; a disaggregated
    bound): no request can be promised there."""
    from spec import BatchedColocated

    poisson_arrivals(workload)
    zero = dict.fromkeys(SLO_KEYS, 0.0)
    p, o = workload.prompt_tokens, workload.output_tokens
    if not isinstance(cluster, BatchedColocated):
        from .batched_disagg import disaggregated_slo

        return disaggregated_slo(rate_per_s, p, o, cluster, slo) or zero
    law = colocated_law(rate_per_s / cluster.instances, p, o, cluster.instance)
    return zero if law is None else colocated_slo(law, o, slo)


def goodput(workload, cluster, slo) -> dict[str, float | str]:
    """The largest total rate (req/s) at which :func:`slo_attainment_at` meets
    ``slo.attainment`` (``goodput_rps``), per GPU (``goodput_per_gpu_rps``), and which
    share falls short first just above it (``limited_by``: ``TTFT``, ``TPOT``, or
    ``stability`` where the form's shares drop to 0 at once: the point left the form's
    stable region before either share reached the target). Attainment falls with the
    rate; found by doubling from 1 req/s, then :data:`GOODPUT_STEPS` bisections."""

    def ok(rate: float) -> bool:
        return slo_attainment_at(rate, workload, cluster, slo)["slo_attainment"] \
            >= slo.attainment

    rate = largest_rate(ok, steps=GOODPUT_STEPS)
    if not math.isfinite(rate):
        raise ValueError("the SLO is met at every rate up to 1e6 req/s: check slo.ttft_s "
                         "and slo.tpot_s")
    above = slo_attainment_at(rate * (1.0 + 2.0 ** -GOODPUT_STEPS) + 1e-9, workload,
                              cluster, slo)
    if above["slo_attainment"] == 0.0:
        limited = "stability"
    elif above["slo_attainment_ttft"] <= above["slo_attainment_tpot"]:
        limited = "TTFT"
    else:
        limited = "TPOT"
    return {"goodput_rps": rate, "goodput_per_gpu_rps": rate / cluster.total_gpus,
            "limited_by": limited}
