"""The ``adapt`` command line. Each layer registers its own subcommands."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    import sims.cli

    parser = argparse.ArgumentParser(
        prog="adapt",
        description="Model-based online adaptation for robots: simulate conditions, "
                    "meta-train adaptive dynamics models, plan, evaluate, export.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sims.cli.add_parser(sub)
    for module in _optional_commands():
        module.add_parser(sub)
    return parser


def _optional_commands() -> list:
    """Subcommands of the later layers, registered when their modules exist."""
    import importlib

    mods = []
    for name in ("adaptive_control.train_cli", "adaptive_control.eval_cli",
                 "export.cli", "policies.cli"):
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
    return mods


def main(argv: list[str] | None = None) -> int:
    import sims  # noqa: F401  (sets the headless rendering backend before mujoco loads)

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"adapt: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
