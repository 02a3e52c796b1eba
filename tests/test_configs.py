"""Every config in conf/ composes, and the base config equals spec's built-in default."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import spec
from conf.schema import register, to_sim_config

CONF = Path(__file__).parent.parent / "conf"
SCENARIOS = sorted(p.stem for p in (CONF / "scenario").glob("*.yaml"))

register()


def _compose(overrides=()):
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_base_config_is_the_builtin_default():
    cfg = _compose()
    assert to_sim_config(cfg) == spec.default_config()
    container = OmegaConf.to_container(cfg)
    assert container["arrival"] == spec.DEFAULTS["arrival"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_composes_and_validates(name):
    cfg = _compose([f"scenario={name}"])
    config = to_sim_config(cfg)
    assert config.mode in ("mono", "disagg")


@pytest.mark.parametrize("group", ["prompt_tokens", "output_tokens"])
@pytest.mark.parametrize(("option", "values"), [
    ("log", {"mean": 5.0, "sigma": 1.0}),
    ("real_mean_std", {"mean": 500.0, "std": 200.0}),
    ("p50_p90", {"p50": 300.0, "p90": 900.0}),
])
def test_every_token_mode_composes(group, option, values):
    cfg = _compose([f"{group}={option}", *(f"{group}.{k}={v}" for k, v in values.items())])
    dist = getattr(to_sim_config(cfg).workload, group)
    assert dist.mode == option


SWEEPS = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml"))


@pytest.mark.parametrize("name", SWEEPS)
def test_every_sweep_composes_and_every_point_validates(name):
    """Expand each sweep as Hydra's basic sweeper would and validate every point."""
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from validate.app import build_point
    from validate.callbacks import sweep_overrides

    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="validate", overrides=[f"+sweep={name}"],
                      return_hydra_config=True)
        assert cfg.hydra.mode.name == "MULTIRUN"
        jobs = sweep_overrides(cfg)
        assert len(jobs) >= 3
        loader = GlobalHydra.instance().config_loader()
        for overrides in jobs:
            job = loader.load_sweep_config(cfg, overrides)
            with open_dict(job):
                del job["hydra"]
            config, options = build_point(job)
            assert config.mode == "both" and config.replications >= 2
