"""The system under study: token-length laws, workload, clusters and run settings.

Imports numpy and scipy only; ``analytic`` and ``simulation`` both take these types.
"""

from .loader import (
    DEFAULTS,
    config_from_mapping,
    config_to_mapping,
    load_config,
    token_dist_from_mapping,
)
from .system import Cluster, DisaggregatedCluster, MonolithicCluster, SimConfig, Workload
from .tokens import TokenDist

__all__ = [
    "DEFAULTS",
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
