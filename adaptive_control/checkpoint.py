"""Checkpoints: atomic writes, loading with ``weights_only=True``, refusal of mismatches.

A checkpoint is a dict of tensors and plain Python values only (str, int, float, bool,
lists, dicts) so that ``torch.load(..., weights_only=True)`` reads it without unpickling
arbitrary objects. Configs travel as JSON strings; random-generator states as JSON or tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sims.atomic import atomic_write

FORMAT_VERSION = 1
KIND = "adaptive-control-checkpoint"


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("adaptive-control")
    except Exception:  # running from a source tree without an install
        return "0+unknown"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically: write a temporary file in the same folder, fsync, rename.

    A crash mid-write leaves the previous checkpoint at ``path`` untouched.
    """
    body = {"kind": KIND, "format_version": FORMAT_VERSION,
            "package_version": package_version(), **payload}
    with atomic_write(path) as f:
        torch.save(body, f)
    return path


def load_checkpoint(path: str | Path, robot: str | None = None) -> dict[str, Any]:
    """Load with ``weights_only=True`` and check kind, format version and (optionally) robot."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint={str(path)!r}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused or corrupt file
        raise ValueError(f"checkpoint={str(path)!r} cannot be loaded safely: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("kind") != KIND:
        raise ValueError(f"checkpoint={str(path)!r} is not an adaptive-control checkpoint")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint={str(path)!r} has format_version={ckpt.get('format_version')!r} "
            f"(written by adaptive-control {ckpt.get('package_version')}); this version "
            f"({package_version()}) reads format_version={FORMAT_VERSION}"
        )
    if robot is not None and ckpt.get("robot") != robot:
        raise ValueError(
            f"checkpoint={str(path)!r} was trained for robot {ckpt.get('robot')!r}, "
            f"not {robot!r}"
        )
    return ckpt
