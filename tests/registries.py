"""The robot and family registries, restored after a test that loads spec files."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sims.registry


@contextlib.contextmanager
def restored_registry() -> Iterator[None]:
    """Robots and families registered inside the block are forgotten after it."""
    saved = dict(sims.registry.ROBOTS), dict(sims.registry.FAMILIES)
    try:
        yield
    finally:
        for live, old in zip((sims.registry.ROBOTS, sims.registry.FAMILIES), saved,
                             strict=True):
            live.clear()
            live.update(old)
