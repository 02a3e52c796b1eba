"""Closed-form TTFT approximations (M/G/c, tandem QNA). Being built: see issue 3."""
