"""Figures and reports from an xarray Dataset of validation results (never runs a model)."""

from .build import build_report

__all__ = ["build_report"]
