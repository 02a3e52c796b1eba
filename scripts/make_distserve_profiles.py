"""Write conf/profiles/distserve*/*.yaml from DistServe's published profile data.

Run from the repository root with the shared data beside it::

    python scripts/make_distserve_profiles.py ../shared/data/profiles/distserve_a100-80g

One YAML per (engine, model, tensor parallelism), coefficients unchanged (ms, as fitted),
KV capacity from ``max_num_tokens.csv`` (pp = 1), and the provenance in each file.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# bytes of keys and values per token, fp16: 2 * layers * hidden * 2
KV_BYTES = {"facebook/opt-13b": 2 * 40 * 5120 * 2, "facebook/opt-66b": 2 * 64 * 9216 * 2}
SHORT = {"facebook/opt-13b": "opt-13b", "facebook/opt-66b": "opt-66b"}


def main(src: Path) -> None:
    commit, date = (src / "SOURCE_COMMIT").read_text().split()
    with open(src / "max_num_tokens.csv") as f:
        kv = {(r["model"], int(r["tp"])): int(r["max_num_tokens"])
              for r in csv.DictReader(f) if r["pp"] == "1"}
    for engine, folder in (("distserve", "distserve"), ("vllm", "distserve-vllm")):
        data = json.loads((src / f"profiler-a100-80g.{engine}.json").read_text())
        out = ROOT / "conf" / "profiles" / folder
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "LICENSE", out / "LICENSE")
        for model, by_tp in data.items():
            for tp, p in by_tp.items():
                name = f"{folder}/{SHORT[model]}_tp{tp}"
                header = (
                    f"# {name}: DistServe's fitted step latency of {model} at tensor "
                    f"parallelism {tp}\n"
                    f"# on A100-80GB (engine '{engine}'). Copied unchanged from "
                    "LLMServe/DistServe\n"
                    "# simdistserve/estimators/profile_data/"
                    f"profiler-a100-80g.{engine}.json\n"
                    f"# at commit {commit} ({date}), Apache-2.0 (LICENSE beside this file).\n"
                    "# KV capacity: max_num_tokens.csv of the same commit (tp "
                    f"{tp}, pp 1). KV bytes per token:\n"
                    "# 2 (keys, values) x layers x hidden x 2 bytes (fp16). "
                    "Written by scripts/make_distserve_profiles.py.\n")
                body = {
                    "form": "distserve",
                    "model": model,
                    "gpu": "A100-80GB",
                    "tp": int(tp),
                    "time_unit": "ms",
                    "prefill": p["prefill"],
                    "decode_small": p["decoding_smallbs"],
                    "decode_large": p["decoding_largebs"],
                    "decode_threshold": p["decoding_large_small_bs_threshold"],
                    "kv_capacity_tokens": kv[(model, int(tp))],
                    "kv_bytes_per_token": KV_BYTES[model],
                    "source": (f"LLMServe/DistServe@{commit} simdistserve/estimators/"
                               f"profile_data/profiler-a100-80g.{engine}.json"),
                }
                path = out / f"{SHORT[model]}_tp{tp}.yaml"
                path.write_text(header + yaml.safe_dump(body, sort_keys=False))
                print(path.relative_to(ROOT))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/profiles/distserve_a100-80g"))
