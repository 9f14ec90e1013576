"""Worker processes and Ctrl-C. A terminal's Ctrl-C goes to every process of its group: a worker
that took it would print a traceback of its own, and a pool that waits for its running work
would hold the command up until that ended. So workers start with SIGINT blocked (a child keeps
its parent's signal mask, through exec too) and leave Ctrl-C to the command, which ends them
at once (:func:`process_pool`; a ``multiprocessing.Pool`` made under :func:`sigint_blocked`
ends its workers when its ``with`` block exits).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures import TimeoutError as ResultNotReady
from multiprocessing.context import BaseContext
from typing import Any


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while worker processes start, so they never see it; a
    Ctrl-C meanwhile reaches this process when the block lifts."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


#: Seconds a wait for a worker's result lasts before it is taken up again: a Ctrl-C delivered
#: to one of this process's other threads (a library's) is acted on between two waits.
WAIT_S = 0.1


class PoolWork:
    """The work :func:`process_pool` submitted: its results, waited for a slice at a time."""

    def __init__(self, futures: list[Future]) -> None:
        self.futures = futures

    def in_order(self) -> Iterator[Any]:
        """The results in the items' order."""
        for future in self.futures:
            while True:
                try:
                    yield future.result(timeout=WAIT_S)
                    break
                except ResultNotReady:
                    continue

    def as_done(self) -> Iterator[tuple[int, Any]]:
        """(item index, result) as each finishes."""
        index = {future: i for i, future in enumerate(self.futures)}
        pending = set(self.futures)
        while pending:
            done, pending = wait(pending, timeout=WAIT_S, return_when=FIRST_COMPLETED)
            for future in done:
                yield index[future], future.result()


@contextlib.contextmanager
def process_pool(fn: Callable[[Any], Any], items: Sequence[Any], workers: int,
                 context: BaseContext) -> Iterator[PoolWork]:
    """``fn`` of each item on ``workers`` processes of ``context``. When the body raises
    (Ctrl-C included) the work not started is cancelled and the workers are ended, not
    waited for."""
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        with sigint_blocked():  # the workers start as the work is submitted
            futures = [pool.submit(fn, item) for item in items]
        try:
            yield PoolWork(futures)
        except BaseException:
            # taken first: shutdown forgets them (``_processes``: the executor's own record)
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            raise
