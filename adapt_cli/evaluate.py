"""``adapt eval`` (methods x held-out scenarios x seeds), ``adapt report`` and
``adapt quickstart``."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adaptive_control.evaluation.episodes import MethodSpec
    from sims.families import TaskFamily


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="evaluate methods on held-out conditions and switches")
    e.add_argument("--family", required=True,
                   help="task family (see `adapt sims list`), planned at --decision-steps")
    e.add_argument("--decision-steps", type=int, default=0,
                   help="control steps per decision: FAMILY@K (default 0: the robot's own, "
                        "5 for the cheetah; 1: every control step; a family named with @K "
                        "keeps its K)")
    e.add_argument("--method", dest="methods", action="append", required=True,
                   metavar="LABEL=RUN|LABEL=mbde:RUN|LABEL=oracle:RUN|LABEL=teacher:RUN|random",
                   help="repeatable. LABEL=RUN: what the run folder (or checkpoint) holds, an "
                        "`adapt train` learner or an `adapt train-policy` policy, labelled "
                        "LABEL; LABEL=RUN+RUN2+...: the learners of several `adapt train` runs "
                        "as one ensemble (each adapted on its own, every candidate scored "
                        "under each, the first run's planner); "
                        "LABEL=mbde:RUN: MB+DE on an MB run; LABEL=oracle:RUN: that "
                        "run's planner on the true simulator; LABEL=teacher:RUN: the teacher a "
                        "distilled policy run learnt from, acting as it labelled (the "
                        "privileged one counts as the oracle); random: uniform random actions. "
                        "A label whose leading letters (grbal in grbal-2) are a method name "
                        "(grbal, rebal, mb, mbde, oracle, policy, random, teacher) must name "
                        "what it evaluates")
    e.add_argument("--allow-family-mismatch", action="store_true",
                   help="evaluate runs trained on another family of the same robot than "
                        "--family (refused by default)")
    e.add_argument("--scenarios", default="fixed,switch",
                   help="comma-separated: fixed (held-out condition all episode), "
                        "switch (healthy, then the held-out condition), healthy (nothing "
                        "broken)")
    e.add_argument("--switch-at", type=float, default=None, help="switch time in seconds")
    e.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    e.add_argument("--duration", type=float, default=20.0, help="seconds per episode")
    e.add_argument("--pred-k", type=int, default=10, help="k of the k-step prediction error")
    e.add_argument("--candidates", type=int, default=None, help="override planner candidates")
    e.add_argument("--horizon", type=int, default=None, help="override planner horizon")
    e.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    e.add_argument("--device", default="cpu",
                   help="where learners adapt and plan: cpu, cuda, cuda:N or auto (policies "
                        "and simulation stay on the CPU)")
    e.add_argument("--video", action="store_true", help="render MP4s of the first seed")
    e.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="one Ray task per episode on the cluster at ADDRESS (HOST:PORT, "
                        "ray://HOST:PORT, auto; alone: a local Ray), instead of --workers; "
                        "see docs/scale-out.md")
    e.add_argument("--out", required=True, help="report folder")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    e.set_defaults(func=cmd_eval, interrupted=lambda args: (
        f"no report written in {args.out} (it is written when every episode has run)"))

    r = sub.add_parser("report", help="rebuild a report folder's table and plots from its "
                                      "results.json")
    r.add_argument("folder", help="a folder written by `adapt eval` or `adapt quickstart`")
    r.set_defaults(func=cmd_report)

    q = sub.add_parser("quickstart", help="meta-train a small GrBAL on cheetah-cripple, compare "
                                          "with MB on the held-out joint, write a report")
    q.add_argument("--out", default="reports/quickstart", help="report folder")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    q.add_argument("--seeds", type=int, default=2)
    q.add_argument("--duration", type=float, default=10.0, help="seconds per episode")
    q.add_argument("--preset", default="small", choices=["small", "tiny"],
                   help="meta-training preset (tiny: seconds, for a smoke test)")
    q.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    q.set_defaults(func=cmd_quickstart, interrupted=lambda args: (
        f"no report written; the training runs' saved iterations are kept in {args.out}/runs"))


def _prepare_out(out: str, overwrite: bool) -> Path:
    path = Path(out)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(f"--out={out!r} exists and is not empty: pass --overwrite to "
                                  "replace it or choose another folder")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cmd_eval(args: argparse.Namespace) -> int:
    from adaptive_control.devices import resolve_device
    from adaptive_control.evaluation.episodes import (
        PlannerSizes,
        default_workers,
        evaluate,
        scenarios_for,
    )
    from adaptive_control.evaluation.report import report_meta, write_report
    from sims.episode import episode_steps_of
    from sims.registry import decision_family

    # Everything is checked before any work starts.
    family = decision_family(args.family, args.decision_steps)
    device = str(resolve_device(args.device))
    methods = parse_methods(args.methods, family, device, args.allow_family_mismatch)
    scenarios = scenarios_for(family, [s.strip() for s in args.scenarios.split(",")],
                              args.switch_at)
    if args.seeds < 1:
        raise ValueError(f"--seeds={args.seeds}: must be >= 1")
    episode_steps = episode_steps_of(args.duration, family.robot.control_timestep)
    for sc in scenarios:
        if sc.switch_time_s is not None and not 0 < sc.switch_time_s < args.duration:
            raise ValueError(f"--switch-at={sc.switch_time_s:g} s must fall inside the episode "
                             f"(0, {args.duration:g}) s; lengthen --duration or move the switch")
    planner = PlannerSizes(num_candidates=args.candidates, horizon=args.horizon)
    if args.ray is not None:
        from adaptive_control.distributed import check_address

        check_address(args.ray)  # a malformed or silent address: refused before any work
    out = _prepare_out(args.out, args.overwrite)
    seeds = list(range(args.seeds))
    episodes = evaluate(methods, family, scenarios, seeds, episode_steps,
                        args.workers or default_workers(), args.pred_k, planner,
                        video_episodes=1 if args.video else 0, ray=args.ray)
    meta = report_meta(family, methods, scenarios, seeds, episode_steps, args.pred_k)
    files = write_report(out, episodes, meta, family.robot.control_timestep, video=args.video,
                         robot=family.robot.name)
    print((out / "summary.md").read_text().split("\n\n![")[0])
    print("\n" + "\n".join(f"  {p}" for p in files.values()))
    return 0


#: ``--method LABEL=VARIANT:RUN``: what a variant makes of a run (``teacher``: of an
#: `adapt train-policy` distillation run, the others of an `adapt train` run).
METHOD_VARIANTS = ("mbde", "oracle", "teacher")


def parse_methods(texts: list[str], family: TaskFamily, device: str = "cpu",
                  allow_family_mismatch: bool = False) -> list[MethodSpec]:
    """Every ``--method`` (``parse_method``), with unique labels."""
    methods = [parse_method(t, family, device, allow_family_mismatch) for t in texts]
    labels = [m.name for m in methods]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--method labels must be unique, got {labels}")
    return methods


def parse_method(text: str, family: TaskFamily, device: str = "cpu",
                 allow_family_mismatch: bool = False) -> MethodSpec:
    """One ``--method``: ``random``, ``LABEL=RUN``, ``LABEL=mbde:RUN``, ``LABEL=oracle:RUN`` or
    ``LABEL=teacher:RUN`` (the teacher a distilled policy run learnt from),
    resolved and checked against ``family`` before any episode runs.

    What is evaluated comes from the syntax and from what RUN holds, never from LABEL: an
    `adapt train` run is the learner its saved config names (run on ``device``), an
    `adapt train-policy` run its policy; ``mbde:`` is MB+DE on an MB run's weights, ``oracle:``
    the run's planner on the true simulator, ``teacher:`` a distilled policy's teacher. A label
    whose leading letters are a method's name
    must be that method's, so ``grbal=runs/mb`` is refused instead of reported as GrBAL. A run of
    another robot is refused, one of another family unless ``allow_family_mismatch``.
    """
    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.evaluation.episodes import LearnerMethod, MethodSpec, RandomMethod
    from adaptive_control.evaluation.oracle import OracleMethod
    from adaptive_control.runs import checkpoint_path, split_runs
    from adaptive_control.training.config import config_from_json
    from policies.config import policy_config_from_json
    from policies.evaluate import PolicyMethod, TeacherMethod
    from policies.training import CONTENT as POLICY_CONTENT

    if text == "random":
        return MethodSpec("random", RandomMethod())
    label, _, source = text.partition("=")
    if not label or not source:
        raise ValueError(f"--method {text!r}: allowed 'random', LABEL=RUN, LABEL=mbde:RUN, "
                         "LABEL=oracle:RUN or LABEL=teacher:RUN (RUN: a run folder or "
                         "checkpoint of `adapt train` or `adapt train-policy`)")
    variant, colon, run = source.partition(":")
    if not (colon and variant in METHOD_VARIANTS):
        variant, run = "", source
    run, *others = split_runs(run)  # RUN+RUN2+...: one ensemble of the runs' learners
    path = checkpoint_path(run)
    if not path.is_file():
        hint = ""
        if run == "random":
            hint = "; the random floor is `--method random`, without a label"
        elif re.match(r"[A-Za-z]\w*:", source):
            hint = (f"; the variants are {', '.join(v + ':RUN' for v in METHOD_VARIANTS)} "
                    "(a policy run needs none: its folder tells)")
        raise ValueError(f"--method {text!r}: run folder or checkpoint {run!r} not found{hint}")
    try:
        ckpt = load_checkpoint(path, robot=family.robot.name)
    except ValueError as e:
        raise ValueError(f"--method {text!r}: {e}") from e

    if ckpt.get("content") == POLICY_CONTENT:
        pcfg = policy_config_from_json(ckpt["config"])
        trained_on = pcfg.family
        if variant == "teacher":
            if pcfg.method != "distill":
                raise ValueError(f"--method {text!r}: teacher:RUN needs a distilled policy "
                                 f"run, {run!r} was trained by {pcfg.method!r}")
            spec = MethodSpec(label, TeacherMethod(str(path)))
            # the privileged teacher is the oracle: either name may label it
            kind = ("teacher", spec.factory.describe()["kind"])
        elif variant:
            raise ValueError(f"--method {text!r}: {variant}:RUN needs an `adapt train` run, "
                             f"{run!r} holds a policy (evaluate it as {label}={run}, or its "
                             f"teacher as teacher=teacher:{run})")
        else:
            spec, kind = MethodSpec(label, PolicyMethod(str(path))), "policy"
    elif "learner" in ckpt:
        cfg = config_from_json(ckpt["config"])
        trained_on = cfg.family
        if variant == "teacher":
            raise ValueError(f"--method {text!r}: teacher:RUN needs a distilled policy run "
                             f"(`adapt train-policy`), {run!r} holds a learner")
        if variant == "oracle":
            spec, kind = MethodSpec(label, OracleMethod(str(path))), "oracle"
        elif variant == "mbde":
            if cfg.learner != "mb":
                raise ValueError(f"--method {text!r}: MB+DE needs an MB checkpoint, {run!r} "
                                 f"holds {cfg.learner!r}")
            spec = MethodSpec(label, LearnerMethod(str(path), mbde=True, device=device))
            kind = "mbde"
        else:
            spec = MethodSpec(label, LearnerMethod(str(path), device=device))
            kind = cfg.learner
    else:
        raise ValueError(f"--method {text!r}: {run!r} holds neither a learner (`adapt train`) "
                         "nor a policy (`adapt train-policy`)")

    if others:
        spec = MethodSpec(label, _ensemble_method(text, spec.factory, cfg if "learner" in ckpt
                                                  else None, others, family))
    if trained_on != family.name and not allow_family_mismatch:
        raise ValueError(f"--method {text!r}: {run!r} was trained on family {trained_on!r}, "
                         f"not the evaluated --family {family.name!r}; pass "
                         "--allow-family-mismatch to evaluate it there")
    _check_label(text, label, kind, run)
    return spec


def _ensemble_method(text: str, first: Any, cfg: Any, others: list[str],
                     family: TaskFamily) -> Any:
    """``first`` (a LearnerMethod) joined with the learners of the runs ``others`` into one
    ensemble, each run checked here: an `adapt train` run of the same learner, family and M."""
    from dataclasses import replace

    from adaptive_control.builders import check_joinable
    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.evaluation.episodes import LearnerMethod
    from adaptive_control.runs import checkpoint_path
    from adaptive_control.training.config import config_from_json

    if not isinstance(first, LearnerMethod):
        raise ValueError(f"--method {text!r}: RUN+RUN2+... joins `adapt train` learners into an "
                         "ensemble; a policy or the oracle takes one run")
    members = []
    for other in others:
        path = checkpoint_path(other)
        if not path.is_file():
            raise ValueError(f"--method {text!r}: run folder or checkpoint {other!r} not found")
        try:
            ckpt = load_checkpoint(path, robot=family.robot.name)
        except ValueError as e:
            raise ValueError(f"--method {text!r}: {e}") from e
        if "learner" not in ckpt:
            raise ValueError(f"--method {text!r}: {other!r} holds no `adapt train` learner")
        try:
            check_joinable(cfg, config_from_json(ckpt["config"]), repr(other))
        except ValueError as e:
            raise ValueError(f"--method {text!r}: {e}") from None
        members.append(str(path))
    return replace(first, members=tuple(members))


def _check_label(text: str, label: str, kind: str | tuple[str, ...], run: str) -> None:
    """Refuse a label whose leading letters are a method's name other than ``kind``, what is
    evaluated (a learner name, mbde, oracle, policy or teacher; several when it is more than
    one of them)."""
    from adaptive_control.learners import LEARNERS

    names = (*LEARNERS, "oracle", "policy", "random", "teacher")
    word = re.match(r"[a-z]*", label.lower())[0]  # type: ignore[index]  (always matches)
    kinds = (kind,) if isinstance(kind, str) else kind
    kind = kinds[0]
    if word in names and word not in kinds:
        if word in METHOD_VARIANTS:
            fix = f"{label}={word}:{run}"
        else:
            fix = f"{kind}={kind}:{run}" if kind in METHOD_VARIANTS else f"{kind}={run}"
        raise ValueError(f"--method {text!r}: the label {label!r} names {word!r} but the "
                         f"method is {kind!r} (from {run!r}); labels whose leading letters "
                         f"are a method's name ({', '.join(names)}) must name what they evaluate: "
                         f"e.g. {fix}")

def cmd_report(args: argparse.Namespace) -> int:
    from adaptive_control.evaluation.report import rebuild_report

    summary = rebuild_report(Path(args.folder))
    print(summary.read_text().split("\n\n![")[0])
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Train small GrBAL and MB on cheetah-cripple, compare them on the held-out back thigh."""
    from export.quickstart import quickstart

    if args.seeds < 1 or args.duration <= 3.0:
        raise ValueError(f"--seeds={args.seeds}, --duration={args.duration:g}: need seeds >= 1 "
                         "and more than 3 s (the switch is at 3 s)")
    quickstart(_prepare_out(args.out, args.overwrite), args.preset, args.seeds,
               args.duration, args.workers)
    return 0
