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
    if config.serving == "fifo":
        assert config.mode in ("mono", "disagg")
    else:  # batched scenarios compare both architectures on the same GPUs
        mono, disagg = config.clusters()
        assert config.mode == "both" and mono.total_gpus == disagg.total_gpus == 2


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


SWEEPS = sorted(p.stem for p in (CONF / "sweep").glob("*.yaml") if p.stem != "grid")


def test_grid_sweep_is_one_job_over_the_schema_axes():
    """``+sweep=grid`` is the fidelity grid: one job (not a multirun) whose axes are the
    schema's defaults, the grid ``validate.fidelity`` builds by default."""
    from validate.fidelity import REPLICATIONS, GridAxes

    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="validate", overrides=["+sweep=grid"],
                      return_hydra_config=True)
        assert cfg.hydra.mode is None or cfg.hydra.mode.name != "MULTIRUN"
        g = cfg.validation.grid
        axes = GridAxes.from_mapping(g)
        assert axes == GridAxes()
        assert g.replications == REPLICATIONS == 20 and g.workers == 1 and g.reference is None


@pytest.mark.parametrize("name", SWEEPS)
def test_every_sweep_composes_and_every_point_validates(name):
    """Expand each sweep as Hydra's basic sweeper would and validate every point."""
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from validate.app import build_point
    from validate.combine import sweep_jobs

    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="validate", overrides=[f"+sweep={name}"],
                      return_hydra_config=True)
        assert cfg.hydra.mode.name == "MULTIRUN"
        jobs = sweep_jobs(cfg)
        assert len(jobs) >= 3
        loader = GlobalHydra.instance().config_loader()
        for overrides in jobs:
            job = loader.load_sweep_config(cfg, overrides)
            with open_dict(job):
                del job["hydra"]
            config, options = build_point(job)
            assert config.mode == "both" and config.replications >= 2


# ---------------------------------------------------------------- one config path

@pytest.mark.parametrize("group", ["prompt_tokens", "output_tokens"])
@pytest.mark.parametrize(("option", "values"), [
    ("log", {"mean": 5.0, "sigma": 1.0}),
    ("real_mean_std", {"mean": 500.0, "std": 200.0}),
    ("p50_p90", {"p50": 300.0, "p90": 900.0}),
])
def test_mode_switch_is_the_same_on_every_entry_point(group, option, values):
    """``group=MODE group.k=v`` on the command line and ``{group: {mode, k: v}}`` in a
    seed-style file give the same law: the old mode's values cleared, min_value kept."""
    cfg = _compose([f"{group}={option}", *(f"{group}.{k}={v}" for k, v in values.items())])
    via_hydra = getattr(to_sim_config(cfg).workload, group)
    via_file = getattr(spec.config_from_mapping({group: {"mode": option, **values}}).workload,
                       group)
    assert via_hydra == via_file
    assert via_hydra.min_value == spec.DEFAULTS[group]["min_value"]


def test_leaf_settings_are_the_spec_types_fields():
    """Each leaf of the schema has exactly its spec type's fields and defaults, so that a
    field added to a spec type is a setting everywhere (Hydra, files, API) at once."""
    import dataclasses

    from spec import schema
    from spec.batched import SLO, Instance

    def defaults(cls, skip=()):
        return {f.name: (f.default if f.default is not dataclasses.MISSING else "nested")
                for f in dataclasses.fields(cls) if f.metadata.get("config", True)
                and f.name not in skip}

    for node, spec_type in ((schema.MonoSettings, spec.MonolithicCluster),
                            (schema.DisaggSettings, spec.DisaggregatedCluster),
                            (schema.TokenSettings, spec.TokenDist),
                            (schema.SLOSettings, SLO),
                            (schema.BatchedMonoSettings, spec.BatchedColocated),
                            (schema.BatchedDisaggSettings, spec.BatchedDisaggregated),
                            (type(schema.Settings().batched_mono.instance), Instance)):
        assert defaults(node) == defaults(spec_type), \
            f"{node.__name__} differs from {spec_type.__name__}"
    assert defaults(schema.ArrivalSettings, skip=("rate_per_s",)) == \
        defaults(spec.ArrivalProcess)
    composed = OmegaConf.to_container(_compose())
    assert set(composed["cluster_disagg"]) == set(schema.to_mapping(schema.DisaggSettings()))


def test_every_entry_point_gives_the_builtin_default(tmp_path):
    """Hydra's composed default, an empty seed file and the Python API agree."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    default = spec.default_config()
    assert to_sim_config(_compose()) == default
    assert spec.load_config(empty) == default
    assert spec.config_from_mapping(spec.DEFAULTS) == default
    from spec.schema import SERVING_KEYS

    fifo_only = {k: v for k, v in spec.DEFAULTS.items() if k not in SERVING_KEYS["batched"]}
    assert spec.config_to_mapping(default) == fifo_only


def test_validate_app_defaults_live_in_its_schema():
    from conf.schema import ValidateConfig

    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="validate")
    assert cfg.mode == "both" and cfg.replications == ValidateConfig.replications
    assert cfg.sim_seconds == ValidateConfig.sim_seconds


def test_reports_do_not_import_hydra():
    """``reports`` reads data only: importing it must not pull in the config schema."""
    import subprocess
    import sys

    code = ("import sys, reports; bad = [m for m in ('hydra', 'omegaconf', 'conf.schema') "
            "if m in sys.modules]; print(bad); raise SystemExit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
