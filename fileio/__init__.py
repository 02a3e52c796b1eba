"""Writing results so that nothing is lost: atomic file writes and strict JSON.

Standard library only, so that ``reports`` and ``validate`` can write files without
importing the Hydra config schema.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_text", "check_writable", "json_safe"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path: str | Path, field: str) -> None:
    """Refuse, before any work, an output path that cannot be written: its folder is
    created if missing and a scratch file is made and removed there.

    Raises
    ------
    ValueError
        ``field = 'path': cannot write there (reason)``.
    """
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{field} = {str(path)!r}: is a directory; give a file path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".chk")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ValueError(f"{field} = {str(path)!r}: cannot write there "
                         f"({exc.strerror or exc})") from None


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> None:
    """Produce ``path`` atomically: ``write(tmp)`` fills a temporary file beside it, which
    is then renamed over ``path``; on any failure the temporary file is removed and
    ``path`` is untouched (a reader never sees half a file). The file gets the
    permissions the umask gives a new file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would have made it (mkstemp: 0600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def json_safe(obj: Any) -> Any:
    """NaN and infinities become ``None`` so the output is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and callable(obj.item):
        return json_safe(obj.item())
    return obj
