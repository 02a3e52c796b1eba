"""Range checks that raise one clear ``ValueError`` naming the field.

Every message has the same shape, ``"<field> = <value>: must be <range>"``, so a user
reading it knows which value was wrong and what would be accepted.
"""

from __future__ import annotations

import math
from numbers import Integral, Real


def _is_real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def show(value: object) -> str:
    """``repr`` of a value, with numpy scalars shown as plain Python numbers."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        return repr(int(value))
    if isinstance(value, Real) and not isinstance(value, bool):
        return repr(float(value))
    return repr(value)


def real(field: str, value: object, *, low: float = -math.inf, high: float = math.inf,
         low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number within the range.

    Raises
    ------
    ValueError
        Naming ``field``, the value and the allowed range.
    """
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    if math.isinf(low) and math.isinf(high):
        allowed = "a finite number"
    elif math.isinf(high):
        allowed = f"{'>' if low_open else '>='} {low:g}"
    elif math.isinf(low):
        allowed = f"{'<' if high_open else '<='} {high:g}"
    else:
        allowed = f"in {left}{low:g}, {high:g}{right}"
    if not _is_real(value):
        raise ValueError(f"{field} = {show(value)}: must be a number {allowed}")
    x = float(value)  # type: ignore[arg-type]
    if not math.isfinite(x):
        raise ValueError(f"{field} = {show(value)}: must be a finite number {allowed}")
    too_low = x <= low if low_open else x < low
    too_high = x >= high if high_open else x > high
    if too_low or too_high:
        raise ValueError(f"{field} = {show(value)}: must be {allowed}")
    return x


#: Token speeds a GPU (or a profile) may have: one token in 1,000 s to 10^12 tokens/s.
#: Outside them a prompt's time under- or overflows the float arithmetic downstream.
TOKEN_RATE_RANGE = (1e-3, 1e12)


#: Most GPUs (or instances) in one pool: past the largest clusters built (about 10^5
#: GPUs) with room to spare; an engine keeps a few words per GPU, so 10^8 would need GBs.
MAX_GPUS = 1_000_000


#: Most batched instances in one pool: the batched engines look at every instance at each
#: event, so a run's work grows with the count (10^4 instances: about 1 s per 10^5 events).
MAX_INSTANCES = 10_000


def gpu_count(field: str, value: object) -> int:
    """A whole number of GPUs in ``[1, MAX_GPUS]``."""
    return whole(field, value, high=MAX_GPUS)


def instance_count(field: str, value: object) -> int:
    """A whole number of batched instances in ``[1, MAX_INSTANCES]``."""
    return whole(field, value, high=MAX_INSTANCES)


def token_rate(field: str, value: object) -> float:
    """A speed in tokens/s within :data:`TOKEN_RATE_RANGE`."""
    return real(field, value, low=TOKEN_RATE_RANGE[0], high=TOKEN_RATE_RANGE[1])


def positive(field: str, value: object) -> float:
    """A finite number > 0."""
    return real(field, value, low=0.0, low_open=True)


def nonnegative(field: str, value: object) -> float:
    """A finite number >= 0."""
    return real(field, value, low=0.0)


def whole(field: str, value: object, *, low: int = 1, high: int | None = None) -> int:
    """Return ``value`` as an int if it is a whole number in ``[low, high]``.

    Floats with an integral value (``4.0``) are accepted; ``4.5``, ``True`` and strings are not.
    """
    allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
    if isinstance(value, bool) or not _is_real(value):
        raise ValueError(f"{field} = {show(value)}: must be a whole number {allowed}")
    x = float(value)  # type: ignore[arg-type]
    if not math.isfinite(x) or x != math.floor(x):
        raise ValueError(f"{field} = {show(value)}: must be a whole number {allowed}")
    n = int(value) if isinstance(value, Integral) else int(x)
    if n < low or (high is not None and n > high):
        raise ValueError(f"{field} = {show(value)}: must be a whole number {allowed}")
    return n


def choice(field: str, value: object, allowed: tuple[str, ...]) -> str:
    """A string among ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{field} = {show(value)}: must be one of {', '.join(allowed)}")
    return str(value)


def keys(field: str, given: object, allowed: tuple[str, ...]) -> dict:
    """Refuse a mapping with keys outside ``allowed`` (typos must not be silently ignored)."""
    if not isinstance(given, dict):
        raise ValueError(
            f"{field} = {show(given)}: must be a mapping with keys {', '.join(allowed)}")
    unknown = sorted(str(k) for k in given if k not in allowed)
    if unknown:
        raise ValueError(
            f"{field}: unknown key(s) {', '.join(unknown)}; allowed keys are {', '.join(allowed)}"
        )
    return given
