"""Simulate the batched closed forms' accuracy grid once (issue 11): the reference
``tests/test_batched_accuracy.py`` and the docs price today's forms against.

The grid is :mod:`validate.batched_accuracy`'s (2 profiles x 3 architectures x 3 prompt
spreads, 7 loads each of the form's own predicted limit: 126 points, and each case's knee
at 0.95 and 1.05 of the limit). Every point runs on the exact fast engine,
``REPLICATIONS`` runs of ``REQUESTS`` requests with a seed of its own
(``SeedSequence([SEED, case, load])``); stored: the rate, the simulated mean TTFT and
TPOT with their 95 % half-widths, and the stability verdict. The rates are stored, so a
changed form is priced at the same rates; a changed limit shows as a stale reference
(the test says to run this again).

Run (about 15 minutes on 2 cores)::

    python scripts/make_batched_accuracy_reference.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fileio import atomic_write_text  # noqa: E402
from validate import batched_accuracy as grid  # noqa: E402

OUT = ROOT / "tests" / "data" / "batched_accuracy_reference.json"
SEED = 20261125


def main() -> int:
    cases = []
    start = time.perf_counter()
    for i, case in enumerate(grid.CASES):
        limit = case.limit()
        points = []
        for j, load in enumerate(grid.LOADS):
            rate = load * limit
            sim = grid.simulate_point(case, rate, [SEED, i, j])
            points.append({"load": load, "rate_per_s": rate, **sim})
        knee = {}
        for j, factor in enumerate((0.95, 1.05)):
            probe = grid.simulate_point(case, factor * limit, [SEED, i, 100 + j],
                                        replications=grid.KNEE_REPLICATIONS, requests=None,
                                        seconds=grid.KNEE_SECONDS)
            knee[f"stable_at_{factor:g}"] = probe["stable"]
        cases.append({"profile": case.profile, "architecture": case.architecture,
                      "sigma": case.sigma, "limit_rps": limit, "points": points,
                      "knee": knee})
        print(f"{case.key}: limit {limit:.3f} req/s, knee {knee} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    doc = {"generated_by": "scripts/make_batched_accuracy_reference.py", "seed": SEED,
           "replications": grid.REPLICATIONS, "requests_per_replication": grid.REQUESTS,
           "knee_replications": grid.KNEE_REPLICATIONS, "knee_seconds": grid.KNEE_SECONDS,
           "chunk_budget": grid.CHUNK_BUDGET, "cases": cases}
    atomic_write_text(OUT, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
