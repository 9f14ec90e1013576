"""Ray as the distributed engine: connect to a cluster and map a function over items as Ray tasks.

Optional: ``pip install adaptive-control[ray]``. Nothing imports Ray unless a command is given
``--ray``; without it every command runs on local processes as before.

A task is a module-level function and its arguments, pickled: configs, paths and seeds, never a
live torch model (each worker builds its own). Results come back in the order of the items,
whatever order the tasks finish in, so a run on Ray equals the local run of the same items.
A task whose worker process dies is retried by Ray (``max_retries``); a task that raises is not,
since the same seed would raise again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Times Ray re-runs a task whose worker process died (killed, out of memory, node lost).
MAX_RETRIES = 3


_NO_RAY = "--ray needs Ray: pip install 'adaptive-control[ray]' (or pip install 'ray>=2.9')"


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ValueError(_NO_RAY) from e
    return ray


def check_address(address: str, reachable: bool = True) -> str:
    """``local`` (a Ray instance on this machine), ``auto`` (the cluster this machine joined with
    ``ray start``), ``HOST:PORT`` or ``ray://HOST:PORT``; refused before any work otherwise, and
    (``reachable``) when nothing answers at HOST:PORT."""
    from importlib.util import find_spec

    if find_spec("ray") is None:  # without importing it: that takes a second
        raise ValueError(_NO_RAY)
    address = address.strip()
    if address in ("local", "auto"):
        return address
    if ":" in address and address.rsplit(":", 1)[1].isdigit():
        if reachable:
            _check_reachable(address)
        return address
    raise ValueError(f"--ray={address!r}: allowed 'local', 'auto', HOST:PORT or "
                     "ray://HOST:PORT (the head node's address, see `ray start --head`)")


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Ray waits forever for a head that never answers: refuse such an address at once."""
    import socket

    host, port = address.removeprefix("ray://").rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ValueError(f"--ray={address!r}: no Ray head answers at {host}:{port} ({e}); "
                         "start one with `ray start --head --port=6379`, check it with "
                         "`ray status`") from e


def connect(address: str = "local", num_cpus: int | None = None, quiet: bool = False) -> Any:
    """Join (or start, for ``local``) a Ray cluster; prints the dashboard address when Ray runs
    one. Workers find this package as the driver does (installed, or on ``PYTHONPATH``)."""
    ray = _ray()
    address = check_address(address, reachable=not ray.is_initialized())
    if not ray.is_initialized():
        env = {k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "MUJOCO_GL")}
        kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}} if env else {}
        if address == "local":
            kwargs["num_cpus"] = num_cpus
        # "local" always starts a new instance, whatever RAY_ADDRESS says.
        ctx = ray.init(address=address,
                       log_to_driver=False, logging_level="ERROR", **kwargs)
        url = getattr(ctx, "dashboard_url", None)
        if url and not quiet:
            print(f"ray: dashboard at http://{url}", flush=True)
    return ray


def ray_map(fn: Callable[[T], R], items: Sequence[T], desc: str = "tasks", unit: str = "task",
            progress: bool = True, max_retries: int = MAX_RETRIES,
            num_cpus: float = 1) -> list[R]:
    """``[fn(x) for x in items]`` with one Ray task per item, on the connected cluster; one
    progress bar over all tasks (rate, ETA). Results in the order of ``items``."""
    from tqdm.auto import tqdm

    ray = _ray()
    if not ray.is_initialized():
        raise RuntimeError("ray_map: call connect() first")
    remote = ray.remote(num_cpus=num_cpus, max_retries=max_retries)(fn)
    refs = [remote.remote(x) for x in items]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    pending = list(refs)
    with tqdm(total=len(refs), desc=desc, unit=unit, disable=not progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                results[index[ref]] = ray.get(ref)
                bar.update(1)
    return results
