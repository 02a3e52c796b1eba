"""Simulate the fidelity grid of issue 14 once: the reference the closed forms are checked
against (``tests/test_fidelity.py``; ``python -m validate +sweep=grid
validation.grid.reference=tests/data/fidelity_reference.json`` prices it without
simulating again).

The grid (``validate.fidelity.GridAxes``: 1 to 64 GPUs, disaggregated splits 1:7 to 7:1,
loads 0.3 to 0.95, token sigma 0.3, 0.9, 1.5; 558 points) runs on the exact fast engine
at the built-in default's token means and GPU speeds, 10 replications per point, each
sized by ``requests_per_replication``. Stored per point: the point, its rate and run size,
and each TTFT statistic and stage wait as ``[estimate, 95 % CI low, high]``.

Run (7 minutes on 2 cores with 2 workers)::

    python scripts/make_fidelity_reference.py [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import spec  # noqa: E402
from fileio import atomic_write_text  # noqa: E402
from validate.fidelity import GridAxes, dump_reference, reference_document  # noqa: E402

OUT = ROOT / "tests" / "data" / "fidelity_reference.json"
SEED = 20261124
REPLICATIONS = 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    doc = reference_document(GridAxes(), spec.default_config(), seed=SEED,
                             replications=REPLICATIONS, workers=args.workers)
    atomic_write_text(args.out, dump_reference(doc))
    print(f"{len(doc['points'])} points in {doc['elapsed_s']:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
