"""The system under study: token-length laws, workload, clusters and run settings.

Imports numpy and scipy only; ``analytic`` and ``simulation`` both take these types.
"""

from .batched import SLO, BatchedColocated, BatchedDisaggregated, Instance
from .loader import (
    DEFAULTS,
    config_from_mapping,
    config_to_mapping,
    load_config,
    token_dist_from_mapping,
)
from .profile import GPUSpec, ModelConfig, Profile
from .profiles import load_profile, profile_names
from .system import (
    ArrivalProcess,
    Cluster,
    DisaggregatedCluster,
    MonolithicCluster,
    SimConfig,
    Workload,
)
from .tokens import TokenDist

__all__ = [
    "DEFAULTS",
    "SLO",
    "ArrivalProcess",
    "BatchedColocated",
    "BatchedDisaggregated",
    "GPUSpec",
    "Instance",
    "ModelConfig",
    "Profile",
    "load_profile",
    "profile_names",
    "Cluster",
    "DisaggregatedCluster",
    "MonolithicCluster",
    "SimConfig",
    "TokenDist",
    "Workload",
    "config_from_mapping",
    "config_to_mapping",
    "load_config",
    "token_dist_from_mapping",
]


def default_config() -> SimConfig:
    """The built-in default: 2 req/s, 4 GPUs monolithic vs 2 + 2 disaggregated."""
    return config_from_mapping({})
