"""Session set-up shared by every test module."""

from __future__ import annotations

import functools
import gc


def pytest_sessionstart(session) -> None:
    """Start with every memo (``functools.lru_cache``) empty.

    Mutation testing (mutmut) runs each mutant's tests in a process forked from one that
    already ran the suite: a warm cache would hand the mutant the original code's results
    (a mutated ``_nodes`` or ``_stationary`` never ran, and survived). An ordinary run
    starts empty anyway, so this changes nothing there.
    """
    for obj in gc.get_objects():
        if isinstance(obj, functools._lru_cache_wrapper):
            obj.cache_clear()
