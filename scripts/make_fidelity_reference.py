"""Simulate the fidelity grid of issue 14 once: the reference the closed forms are checked
against (``tests/test_fidelity.py``; ``python -m validate +sweep=grid
validation.grid.reference=tests/data/fidelity_reference.json`` prices it without
simulating again).

The grid (``validate.fidelity.GridAxes``: 1 to 64 GPUs, disaggregated splits 1:7 to 7:1,
loads 0.3 to 0.95, token sigma 0.3, 0.9, 1.5; 558 points) runs on the exact fast engine
at the built-in default's token means and GPU speeds, ``validate.fidelity.REPLICATIONS``
(20) replications per point, each sized by ``requests_per_replication``. Stored per point:
the point, its rate and run size, and each TTFT statistic and stage wait as ``[estimate,
95 % CI low, high]``, estimated with the replications' sampled service moments as control
variates (``validate.fidelity.service_controls``); ``plain`` keeps the plain replication
means and their intervals beside them.

``--holdout`` simulates instead a second grid that shares nothing with the first but
the method: other token medians, GPU speeds and a KV transfer, other cluster sizes,
splits, loads and spreads (:data:`HOLDOUT_MODEL`, :data:`HOLDOUT_AXES`; 120 points) ->
``tests/data/fidelity_holdout.json``. The closed forms' empirical choices (the gamma
law's damping and cap, the linking weight) were fitted on the first grid; the holdout
checks them out of sample.

Run (on 2 cores with 2 workers: about 30 minutes; the holdout 5)::

    python scripts/make_fidelity_reference.py [--workers 2] [--holdout]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import spec  # noqa: E402
from fileio import atomic_write_text  # noqa: E402
from validate.fidelity import (  # noqa: E402
    REPLICATIONS,
    GridAxes,
    dump_reference,
    reference_document,
)

OUT = ROOT / "tests" / "data" / "fidelity_reference.json"
SEED = 20261124
HOLDOUT_OUT = ROOT / "tests" / "data" / "fidelity_holdout.json"
HOLDOUT_SEED = 20261125
#: The holdout's model: prompts of median e^7 (1,100 tokens), outputs of median e^5
#: (150), faster prefill, slower decode, a KV transfer of 10 us a prompt token.
HOLDOUT_MODEL = {
    "prompt_tokens": {"mean": 7.0}, "output_tokens": {"mean": 5.0},
    "cluster_mono": {"prefill_tokens_per_s": 12000.0, "decode_tokens_per_s": 1500.0},
    "cluster_disagg": {"prefill_tokens_per_s": 12000.0, "decode_tokens_per_s": 1500.0,
                       "kv_transfer_s_per_token": 1e-5},
}
HOLDOUT_AXES = GridAxes(total_gpus=(1, 3, 6, 12, 24, 48), prefill_share=(0.2, 0.5, 0.8),
                        load=(0.4, 0.6, 0.85), token_sigma=(0.6, 1.2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--holdout", action="store_true",
                    help="simulate the out-of-sample grid instead")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.holdout:
        axes, base, seed = HOLDOUT_AXES, spec.config_from_mapping(HOLDOUT_MODEL), HOLDOUT_SEED
    else:
        axes, base, seed = GridAxes(), spec.default_config(), SEED
    out = args.out or (HOLDOUT_OUT if args.holdout else OUT)
    doc = reference_document(axes, base, seed=seed, replications=REPLICATIONS,
                             workers=args.workers)
    atomic_write_text(out, dump_reference(doc))
    print(f"{len(doc['points'])} points in {doc['elapsed_s']:.0f} s -> {out}")


if __name__ == "__main__":
    main()
