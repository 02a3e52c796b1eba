"""Discrete-event simulation of monolithic and disaggregated LLM serving (SimPy).

The reference witness: imports ``spec`` only, never ``analytic``.
"""

from .metrics import RequestRecords, confidence_interval, offered_load, quantile_key
from .requests import Requests, generate_requests, load_trace, spawn_seeds
from .runner import (
    Comparison,
    SimulationResult,
    compare,
    run_requests,
    run_simulation,
    simulate,
    simulate_mapping,
    simulate_trace,
)

__all__ = [
    "Comparison",
    "RequestRecords",
    "Requests",
    "SimulationResult",
    "compare",
    "confidence_interval",
    "generate_requests",
    "load_trace",
    "offered_load",
    "quantile_key",
    "run_requests",
    "run_simulation",
    "simulate",
    "simulate_mapping",
    "simulate_trace",
    "spawn_seeds",
]
