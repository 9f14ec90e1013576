"""The ``adapt`` command line: the top layer. Each module parses one group of commands and calls
library functions; building the parser imports no torch, so ``adapt deploy`` runs on a robot
that has only the runtime's dependencies."""

from __future__ import annotations

import argparse
import sys

from adapt_cli import evaluate, export, policies, sims, train
from export.runtime import cli as deploy


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adapt",
        description="Model-based online adaptation for robots: simulate conditions, "
                    "meta-train adaptive dynamics models, plan, evaluate, export.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (sims, train, evaluate, export, deploy, policies):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import sims as _sims  # noqa: F401  (sets the headless rendering backend before mujoco loads)

    return deploy.dispatch(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
