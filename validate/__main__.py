"""``python -m validate [+sweep=NAME] [overrides]``."""

import hydra

from conf.schema import register

register()


@hydra.main(config_path="pkg://conf", config_name="validate", version_base="1.3")
def _main(cfg):
    from validate.app import main

    return main(cfg)


if __name__ == "__main__":
    _main()
