"""``python -m validate [+sweep=NAME] [overrides]``."""

import hydra

from conf.schema import register

register()


@hydra.main(config_path="pkg://conf", config_name="validate", version_base="1.3")
def _main(cfg):
    from validate.app import main

    return main(cfg)


def _salvage() -> None:
    """After a launcher died mid-sweep: combine the finished points, record the rest as
    missing (each with an error.json), write the report, and say so in one line."""
    from validate.callbacks import SWEEP_STATE
    from validate.combine import combine_and_report

    folder = SWEEP_STATE["folder"]
    if folder is None or SWEEP_STATE["ended"] or not folder.is_dir():
        return
    import json
    import sys

    try:
        ds = combine_and_report(folder)
    except ValueError as exc:
        print(f"error: the sweep stopped before any point finished ({exc})", file=sys.stderr)
        return
    n_missing = len(json.loads(ds.attrs["missing_points"]))
    print(f"error: the sweep's launcher stopped mid-sweep (a worker was killed?): "
          f"{ds.attrs['n_points']} finished points kept, {n_missing} missing, each with an "
          f"error.json; dataset and report in {folder}", file=sys.stderr)


if __name__ == "__main__":
    try:
        _main()
    finally:
        _salvage()
