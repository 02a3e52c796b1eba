"""Figures and reports from an xarray Dataset of sweep results."""
