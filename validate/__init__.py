"""The validation app: ``python -m validate``; see validate.app (kept tiny: another PyPI
project installs a module of this name)."""
