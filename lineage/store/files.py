"""Files written outside the database: whole or not at all, and their sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

from lineage.errors import BadInputError


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary file next to ``path``, then rename: never a half-written file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be written ({exc.strerror})") from None
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result file is for sharing
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise BadInputError(f"{path}: cannot be written ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_file(path: str | os.PathLike, what: str = "file") -> bytes:
    """A file's bytes, or one line saying why not (a folder, no permission, unreadable)."""
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{path}: is a folder, not a {what}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """``read_file`` decoded as UTF-8 (BadInputError when it is not text)."""
    try:
        return read_file(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: not a UTF-8 text file, not a {what}") from None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
