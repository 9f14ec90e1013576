"""Atomic writes: a crash mid-write never leaves a truncated file or a half-written folder
behind (:func:`atomic_write` for a file; :func:`staged_folder` and :func:`commit_folder` for a
folder that is written, checked and only then moved into place)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Write to a temporary file in the target's folder, fsync, then rename over ``path``.

    If the body raises, the temporary file is removed and any previous file at ``path`` is
    left exactly as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _usual_permissions(Path(tmp), 0o666)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _usual_permissions(path: Path, mode: int) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)  # mkstemp/mkdtemp create 0600/0700


@contextmanager
def staged_folder(dest: str | Path) -> Iterator[Path]:
    """A fresh temporary folder next to ``dest`` (same file system, so :func:`commit_folder`
    can rename out of it); removed with whatever is left in it when the body ends, also when
    it raises — ``dest`` is then exactly as it was."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def commit_folder(stage: str | Path, dest: str | Path, files: Sequence[str],
                  stale: Iterable[str] = ()) -> None:
    """Move the finished ``files`` of ``stage`` into ``dest``, crash-safely.

    If ``dest`` does not exist the whole folder is renamed into place at once. Otherwise
    the files are replaced one by one in the order given (each replace atomic), so the last
    one — say, a manifest describing the rest — never names files that are not there yet;
    before it, the names in ``stale`` that are not among ``files`` are removed from ``dest``.
    """
    stage, dest = Path(stage), Path(dest)
    for name in files:
        _fsync(stage / name)
    if not dest.exists():
        _usual_permissions(stage, 0o777)
        os.replace(stage, dest)
        return
    *body, last = files
    for name in body:
        os.replace(stage / name, dest / name)
    for name in stale:
        if name not in files:
            (dest / name).unlink(missing_ok=True)
    os.replace(stage / last, dest / last)
