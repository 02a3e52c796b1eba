"""Hydra configs (YAML shipped as package data, found as ``pkg://conf``) and their schema."""
