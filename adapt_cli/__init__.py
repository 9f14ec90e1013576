"""The ``adapt`` command line: the top layer. Each module parses one group of commands and calls
library functions; building the parser imports no torch, so ``adapt deploy`` runs on a robot
that has only the runtime's dependencies.

Ctrl-C ends any command with one line on stderr saying what was kept, and exit status 130
(``export.runtime.cli.dispatch``), never a traceback: also while this package is imported
(the ``adapt`` script imports it before calling :func:`main`), when nothing has been written.
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def _interrupted_while_starting(signum: int, frame: object) -> None:
    # Nothing is written before main() runs: say so and leave at once (an exception would
    # surface mid-import, as a traceback from wherever the import had got to).
    os.write(2, b"adapt: interrupted: nothing written\n")
    os._exit(130)


# Only where nobody chose another handler (a program importing this keeps its own).
_STARTING = (threading.current_thread() is threading.main_thread()
             and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
if _STARTING:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import argparse  # noqa: E402

from adapt_cli import evaluate, export, policies, sims, train  # noqa: E402
from export.runtime import cli as deploy  # noqa: E402
from export.runtime import dds_sim as dds_robot  # noqa: E402

if _STARTING:  # from here on main() turns Ctrl-C into its one line
    signal.signal(signal.SIGINT, signal.default_int_handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adapt",
        description="Model-based online adaptation for robots: simulate conditions, "
                    "meta-train adaptive dynamics models, plan, evaluate, export.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (sims, train, evaluate, export, deploy, dds_robot, policies):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    with deploy.interrupts_between_imports():
        try:
            import sims as _sims  # noqa: F401  (the headless rendering backend before mujoco)

            return deploy.dispatch(build_parser(), argv)
        except KeyboardInterrupt:  # before a command started (a command's own are dispatch's)
            return deploy.report_interrupt(lambda: "nothing written")


if __name__ == "__main__":
    sys.exit(main())
