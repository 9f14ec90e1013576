"""The refusal of a damaged file, in one shape for every kind of file the toolkit reads.

A file that exists but cannot be read as what it should be — truncated, emptied, of another
type, or lacking a member or key its kind always has — is a :class:`DamagedFileError`::

    checkpoint='runs/a/checkpoint.pt' is damaged or not a checkpoint: expected the zip archive
    save_checkpoint writes (kind='adaptive-control-checkpoint'), found 0 bytes (an empty file)

It is distinct from a refusal of readable content (a checkpoint holding pickled objects that
would need arbitrary unpickling, another format version, a robot that differs): those say what
was refused and why, never "damaged".

This package sits below every other (``sims`` included) and imports nothing of theirs, so the
torch-free runtime (``export.runtime``), which must not import ``sims``, raises the same error
as the training stack.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: Bytes of a file's start that a message shows.
HEAD_BYTES = 16
#: Names of what a file does hold that a message lists before "... (N in all)".
SHOWN_NAMES = 12

__all__ = ["DamagedFileError", "file_contents", "missing"]


class DamagedFileError(ValueError):
    """``<field>=<path> is damaged or not <kind>: expected <expected>, found <found>``, where
    ``kind`` comes with its article (``a checkpoint``, ``an MJCF model``).

    ``found`` defaults to :func:`file_contents` of ``path`` (its size and first bytes); a
    loader that found the file readable but incomplete passes :func:`missing` instead. A
    parser's own reason, when it locates the damage (a line number), goes in ``detail``,
    shown last in parentheses on the same line.
    """

    def __init__(self, field: str, path: str | Path, kind: str, expected: str,
                 found: str | None = None, detail: str | None = None) -> None:
        self.field, self.path, self.kind, self.expected = field, str(path), kind, expected
        self.found = file_contents(path) if found is None else found
        self.detail = " ".join(detail.split()) if detail else None  # one line
        super().__init__(f"{field}={self.path!r} is damaged or not {kind}: expected "
                         f"{expected}, found {self.found}"
                         + (f" ({self.detail})" if self.detail else ""))

    def __reduce__(self):  # rebuilt from its fields (worker processes send errors back)
        return type(self), (self.field, self.path, self.kind, self.expected, self.found,
                            self.detail)


def file_contents(path: str | Path) -> str:
    """What a file holds, briefly: its size and the repr of its first :data:`HEAD_BYTES`."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            size = f.seek(0, 2)
    except OSError as e:
        return f"a file that cannot be read ({e.strerror or e})"
    if size == 0:
        return "0 bytes (an empty file)"
    more = "..." if size > len(head) else ""
    return f"{size} bytes starting {head!r}{more}"


def missing(what: str, names: Iterable[str], present: Iterable[str]) -> str:
    """``found`` for a readable file without members or keys its kind always has:
    ``no member 'obs' (it holds ['act', 'lengths'])``, ``no keys ['m', 'robot'] (...)``."""
    names, present = sorted(names), sorted(present)
    shown = f"{what} {names[0]!r}" if len(names) == 1 else f"{what}s {names}"
    held = ", ".join(map(repr, present[:SHOWN_NAMES]))
    if len(present) > SHOWN_NAMES:
        held += f", ... ({len(present)} in all)"
    return f"no {shown} (it holds {f'[{held}]' if present else 'nothing'})"
