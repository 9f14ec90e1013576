"""Checkpoints: atomic writes, loading with ``weights_only=True``, refusal of mismatches.

A file that is not an intact checkpoint (truncated, emptied, another file type, a torch file
of another program) is refused as damaged (``file_errors.DamagedFileError``); an intact one
holding a pickled object that only arbitrary unpickling would read is refused as unsafe.

A checkpoint is a dict of tensors and plain Python values only (str, int, float, bool,
lists, dicts) so that ``torch.load(..., weights_only=True)`` reads it without unpickling
arbitrary objects. Configs travel as JSON strings; random-generator states as JSON or tensors.
Tensors are saved on the CPU whatever device they were trained on, so a checkpoint loads on
any machine; the loader moves them where they are wanted.

A checkpoint carries its family's spec (``sims.specs.artifact_spec``): loading one registers
a family built from a spec file, so a later process needs neither the file nor a
registration, and refuses a checkpoint whose robot differs from the robot of that name here.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from file_errors import DamagedFileError, missing
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

    A crash mid-write leaves the previous checkpoint at ``path`` untouched. Tensors (in
    nested dicts, lists and tuples too) are written as CPU tensors.
    """
    body = {"kind": KIND, "format_version": FORMAT_VERSION,
            "package_version": package_version(), **to_cpu(payload)}
    with atomic_write(path) as f:
        torch.save(body, f)
    return path


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (in nested dicts, lists and tuples) on the CPU.

    What holds only CPU tensors is returned as it is, the very object, so a CPU run saves
    exactly what it saved before devices existed."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        items = {k: to_cpu(v) for k, v in value.items()}
        if all(items[k] is v for k, v in value.items()):
            return value
        out = type(value)(items)
        if hasattr(value, "_metadata"):  # a state_dict's module versions
            out._metadata = value._metadata  # type: ignore[attr-defined]
        return out
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        moved = [to_cpu(v) for v in value]
        if all(m is v for m, v in zip(moved, value, strict=True)):
            return value
        return type(value)(moved)
    return value


def load_checkpoint(path: str | Path, robot: str | None = None) -> dict[str, Any]:
    """Check the archive, load with ``weights_only=True`` and check kind, format version and
    (optionally) robot; register the spec family the checkpoint carries and refuse another
    model under its robot's name (``sims.specs``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint={str(path)!r}: no such file")
    _check_archive(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))  # torch's words
        if refused is None:
            raise _damaged(path, "a data.pkl that torch cannot unpickle") from e
        raise ValueError(
            f"checkpoint={str(path)!r} is refused as unsafe: it holds a pickled Python object "
            f"({refused.group(1)}) that only arbitrary unpickling would read; a checkpoint "
            "holds tensors and plain values only") from e
    except Exception as e:  # torch's errors for an archive it cannot parse
        raise _damaged(path, "an archive whose data.pkl torch cannot read") from e
    if not isinstance(ckpt, dict):
        raise _damaged(path, f"a torch file holding a {type(ckpt).__name__}")
    if ckpt.get("kind") != KIND:
        raise _damaged(path, f"a torch file with kind={ckpt['kind']!r}" if "kind" in ckpt
                       else missing("key", ["kind"], map(str, ckpt)))
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint={str(path)!r} has format_version={ckpt.get('format_version')!r} "
            f"(written by adaptive-control {ckpt.get('package_version')}); this version "
            f"({package_version()}) reads format_version={FORMAT_VERSION}"
        )
    from sims.registry import ROBOTS, get_robot, register_document, split_frame_skip
    from sims.specs import check_robot_identity

    where = f"checkpoint={str(path)!r}"
    register_document(ckpt.get("spec", ""), where)  # older checkpoints: built-in families only
    if robot is not None and ckpt.get("robot") != robot:
        raise ValueError(
            f"checkpoint={str(path)!r} was trained for robot {ckpt.get('robot')!r}, "
            f"not {robot!r}"
        )
    identity = ckpt.get("robot_identity")
    # a frame-skipped robot (NAME@K) is known once its base is
    if identity is not None and split_frame_skip(str(identity.get("name")), where)[0] in ROBOTS:
        check_robot_identity(identity, get_robot(identity["name"]), where)
    return ckpt


def _check_archive(path: Path) -> None:
    """Refuse, as damaged, a file that is not the intact zip archive ``torch.save`` writes:
    truncated, emptied, of another type, without its pickle, or with a member whose bytes no
    longer match their checksum (torch itself reads a flipped tensor byte without noticing)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if not any(n.endswith("/data.pkl") for n in names):  # ARCHIVE/data.pkl
                raise _damaged(path, missing("member", ["data.pkl"], names))
            bad = z.testzip()
    except DamagedFileError:
        raise
    except Exception as e:  # zipfile's many errors for bytes that are no zip archive
        raise _damaged(path) from e
    if bad is not None:
        raise _damaged(path, f"member {bad!r} whose bytes fail its checksum")


def _damaged(path: Path, found: str | None = None) -> DamagedFileError:
    return DamagedFileError("checkpoint", path, "a checkpoint",
                            f"the zip archive save_checkpoint writes (kind={KIND!r})", found)
