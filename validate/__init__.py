"""The validation app (``python -m validate``)."""
