"""The one device setting (``--device`` / ``TrainConfig.device``): where the models, their
optimiser, the adapt step and the planner's tensors live. Simulation, checkpoints on disk,
export and the runtime stay on the CPU whatever it says.

``cpu``, ``cuda``, ``cuda:N`` (GPU number N) or ``auto`` (cuda when available, else cpu).
"""

from __future__ import annotations

import re

import torch
from torch import nn

#: What a device setting may say, as error messages list it.
ALLOWED = "cpu, cuda, cuda:N (N a GPU index) or auto"

_PATTERN = re.compile(r"cpu|cuda|cuda:\d+|auto")


def check_device(text: str, name: str = "--device") -> str:
    """``text`` if it is a device setting, else a ``ValueError`` naming ``name``, the value and
    what is allowed. Syntax only: whether CUDA is there is :func:`resolve_device`'s question
    (a config naming cuda must still load on a machine without one, e.g. to evaluate on CPU)."""
    if not isinstance(text, str) or not _PATTERN.fullmatch(text):
        raise ValueError(f"{name}={text!r} is not a device: allowed {ALLOWED}")
    return text


def resolve_device(text: str, name: str = "--device") -> torch.device:
    """The device ``text`` names on this machine; ``cuda`` (or ``cuda:N``) where CUDA (or
    GPU N) is missing is refused with a ``ValueError`` naming ``name``, the value and what is
    allowed here."""
    check_device(text, name)
    if text == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if text == "auto":
        return torch.device("cuda" if available else "cpu")
    if not available:
        built = ("built with CUDA but finds no GPU" if torch.backends.cuda.is_built()
                 else "a CPU-only build")
        raise ValueError(f"{name}={text!r}: CUDA is not available on this machine (torch "
                         f"{torch.__version__}, {built}): allowed cpu or auto here")
    device = torch.device(text)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ValueError(f"{name}={text!r}: this machine has {count} GPU(s): allowed cpu, "
                         f"cuda, auto or cuda:0 .. cuda:{count - 1}")
    return device


def module_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (or buffer); the CPU for an empty module."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")
