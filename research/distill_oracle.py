"""Diagnostic, not a result: distil a student on the family's *held-out* conditions.

A student that trails its teacher on the held-out set may imitate badly or generalise badly.
This trains one the usual way (`adapt train-policy` preset, same teacher) but with the
family's training distribution replaced by its held-out set, so nothing is left to generalise
to. If this "oracle" student does no better there than the properly trained ones, the gap is
not coverage of the held-out condition (docs/results.md §5).

It breaks the split on purpose: the run folder gets an ``ORACLE`` file saying so, and its
figures must never be reported as held-out results. Evaluate it with the ordinary command:

    python research/distill_oracle.py distill --set "family='quadruped-leg-failure'" \\
        --set "distill.teacher='runs/teacher-quad10/checkpoint.pt'" --set seed=0 \\
        --out runs/oracle/gru-s0
    adapt eval-policy runs/oracle/gru-s0 --episodes 20 --duration 10
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from policies.config import policy_config_from_arg
from policies.training import train_policy
from sims import registry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="a train-policy preset or config file (method distill)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", required=True, help="run folder")
    args = ap.parse_args()
    cfg = policy_config_from_arg(args.config, args.overrides)
    if cfg.method != "distill":
        raise SystemExit(f"method={cfg.method!r}: the oracle is a distillation diagnostic")
    family = registry.get_family(cfg.family)
    held_out = family.test_conditions

    def sample_held_out(rng):  # uniform over the held-out set (one condition: no draw)
        return held_out[0] if len(held_out) == 1 else held_out[int(rng.integers(len(held_out)))]

    # Same name, so the teacher check and `adapt eval-policy` accept the checkpoint; only this
    # process sees the swapped training distribution.
    registry.FAMILIES[cfg.family] = dataclasses.replace(
        family, train_sampler=sample_held_out, is_held_out=lambda c: False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ORACLE").write_text(
        f"Trained on the held-out conditions of {cfg.family} "
        f"({', '.join(c.label for c in held_out)}) by research/distill_oracle.py.\n"
        "A diagnostic: its held-out figures are not held-out results.\n")
    print(train_policy(cfg, out, resume=(out / "checkpoint.pt").exists(), progress=True))


if __name__ == "__main__":
    main()
