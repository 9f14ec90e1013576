"""Damaged files of every kind the toolkit reads get one refusal: ``<field>=<path> is damaged or
not <kind>: expected ..., found ...`` (``file_errors.DamagedFileError``), and on the command
line one ``adapt: error:`` line, exit status 2, nothing written.

Real files, made once per module with the project's own writers (a checkpoint by
``save_checkpoint``, a dataset by ``sims.collect``, a policy deploy folder by
``export_policy``, a controller export by ``export_learner``, a robot spec file and its MJCF),
are damaged by a seeded generator: truncated at random offsets, emptied, replaced by text,
random bytes or a zip without their members, and stripped of members or keys. Each damaged
copy goes through its loader in this process; a sample goes through ``adapt``.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import string
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from registries import restored_registry
from support import tiny_config, tiny_learner
from test_own_robot import write_robot

from adapt_cli import main
from adaptive_control.checkpoint import KIND, load_checkpoint, save_checkpoint
from export.exporter import export_learner
from export.policy import export_policy
from export.runtime import artifacts as C
from export.runtime.artifacts import deploy_kind, read_manifest
from export.runtime.policy import PolicySession
from export.runtime.session import ControllerSession
from file_errors import DamagedFileError
from policies import training
from policies.config import load_policy_config
from sims.collect import collect_open_loop
from sims.conditions import parse_condition
from sims.dataset import Dataset
from sims.registry import get_family, load_spec_file

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

FAMILY = get_family("cheetah-cripple")
SEED = 20261207
#: Damaged copies per kind of file; the whole test needs at least MIN_CASES.
CASES = {"checkpoint": 260, "dataset": 260, "policy export": 230, "controller export": 110,
         "spec": 160}
MIN_CASES = 1000
#: Damaged files that also go through the `adapt` command line, per kind.
CLI_PER_KIND = 8


# ------------------------------------------------------------------ the valid files, once
@dataclass
class Originals:
    checkpoint: Path
    dataset: Path
    policy_dir: Path
    controller_dir: Path
    spec_dir: Path


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> Originals:
    root = tmp_path_factory.mktemp("originals")
    # A tiny GRU policy as `adapt train-policy` saves it (no training).
    cfg = load_policy_config(preset="tiny")
    torch.manual_seed(0)
    policy = training.build_policy(cfg, FAMILY)
    ckpt = save_checkpoint(root / "run" / "checkpoint.pt", {
        "content": training.CONTENT, "robot": FAMILY.robot.name, "family": FAMILY.name,
        "method": cfg.method, "arch": cfg.net.arch, "config": cfg.to_json(),
        "policy": policy.state_dict()})
    conds = [parse_condition(c, FAMILY.robot) for c in ("healthy", "disabled:bthigh")]
    data = collect_open_loop(FAMILY.robot, conds, 12, np.random.default_rng(0), progress=False,
                             family=FAMILY.name).save(root / "data.npz")
    policy_dir = export_policy(ckpt, root / "policy", verify=False).out_dir
    tiny = tiny_config()
    controller_dir = export_learner(tiny_learner(tiny), tiny, root / "controller",
                                    verify=False).out_dir
    spec_dir = write_robot(root / "spec").parent
    return Originals(Path(ckpt), data, Path(policy_dir), Path(controller_dir), spec_dir)


def test_the_originals_load(originals: Originals) -> None:
    """The undamaged files load: every refusal below comes from the damage."""
    assert load_checkpoint(originals.checkpoint)["kind"] == KIND
    assert Dataset.load(originals.dataset).n_trajectories == 2
    assert open_export(originals.policy_dir).kind == C.KIND_POLICY
    assert open_export(originals.controller_dir).kind == C.KIND_CONTROLLER
    with restored_registry():
        assert load_spec_file(originals.spec_dir / "strider.toml").robot.name == "strider"


# ------------------------------------------------------------------ loaders, as the CLI uses them
def open_export(folder: Path) -> PolicySession | ControllerSession:
    """What `adapt deploy` reads of an export folder before it runs: the manifest (when there
    is one), the folder's kind, the session of that kind."""
    if (folder / C.MANIFEST_FILE).is_file():
        read_manifest(folder)
    if deploy_kind(folder) == C.KIND_POLICY:
        return PolicySession(folder)
    return ControllerSession(folder)


# ------------------------------------------------------------------ damage
@dataclass
class Case:
    """One damaged copy: ``target`` is what the loader and the CLI are given, ``damaged`` the
    file that was damaged (the message names it, or the folder that lacks it)."""

    kind: str
    how: str
    target: Path
    damaged: Path
    truncation: bool  # a truncation may leave a file that still loads


def truncate(data: bytes, rng: random.Random) -> bytes:
    """A prefix: anywhere, or near either end, where parsers are most likely to be fooled."""
    n = len(data)
    offset = rng.choice([rng.randrange(n), rng.randrange(min(n, 64)), n - 1 - rng.randrange(
        min(n, 64))])
    return data[:offset]


def text(rng: random.Random) -> bytes:
    words = ["".join(rng.choices(string.ascii_letters, k=rng.randint(1, 9)))
             for _ in range(rng.randint(1, 40))]
    return " ".join(words).encode() + b"\n"


def random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(1, 4096))


def foreign_zip(rng: random.Random) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", text(rng))
    return buf.getvalue()


def whole_file_damage(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """The damage any file can take: truncated, emptied, text, random bytes, a foreign zip."""
    how = rng.choices(["truncated", "emptied", "text", "random bytes", "zip without members"],
                      weights=[6, 1, 1, 1, 1])[0]
    return how, {"truncated": lambda: truncate(data, rng), "emptied": lambda: b"",
                 "text": lambda: text(rng), "random bytes": lambda: random_bytes(rng),
                 "zip without members": lambda: foreign_zip(rng)}[how]()


def checkpoint_cases(o: Originals, out: Path, rng: random.Random, n: int) -> Iterator[Case]:
    data = o.checkpoint.read_bytes()
    for i in range(n):
        path = out / f"c{i}" / "checkpoint.pt"
        path.parent.mkdir(parents=True)
        if i % 10 == 9:  # a torch file of something else
            how = "torch file of another program"
            torch.save(rng.choice([{"some": "thing"}, [1, 2, 3], {"kind": "other"}]), path)
        else:
            how, damaged = whole_file_damage(data, rng)
            path.write_bytes(damaged)
        yield Case("checkpoint", how, path, path, how == "truncated")


def dataset_cases(o: Originals, out: Path, rng: random.Random, n: int) -> Iterator[Case]:
    data = o.dataset.read_bytes()
    with np.load(o.dataset) as z:
        arrays = {k: z[k] for k in z.files}
    for i in range(n):
        path = out / f"d{i}" / "data.npz"
        path.parent.mkdir(parents=True)
        if i % 5 == 4:  # obs or act (and maybe more) left out
            how = "members missing"
            gone = {rng.choice(["obs", "act"])} | set(rng.sample(sorted(arrays), 2))
            np.savez(path, **{k: v for k, v in arrays.items() if k not in gone})
        else:
            how, damaged = whole_file_damage(data, rng)
            path.write_bytes(damaged)
        yield Case("dataset", how, path, path, how == "truncated")


def export_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def policy_export_cases(o: Originals, out: Path, rng: random.Random, n: int) -> Iterator[Case]:
    manifest = json.loads((o.policy_dir / C.MANIFEST_FILE).read_text())
    for i in range(n):
        folder = export_copy(o.policy_dir, out / f"p{i}")
        name = rng.choice([C.MANIFEST_FILE, C.POLICY_FILE, C.REWARD_FILE])
        path = folder / name
        if name == C.MANIFEST_FILE and i % 3 == 0:  # JSON with required fields left out
            how = "manifest keys missing"
            gone = set(rng.sample(C.POLICY_MANIFEST_KEYS, rng.randint(1, 4)))
            path.write_text(json.dumps({k: v for k, v in manifest.items() if k not in gone}))
        elif name == C.MANIFEST_FILE and i % 3 == 1:
            how = "manifest of another JSON type"
            path.write_text(json.dumps(rng.choice([[1, 2], "policy", 3.5, None])))
        else:
            how, damaged = whole_file_damage(path.read_bytes(), rng)
            path.write_bytes(damaged)
        yield Case("policy export", f"{name}: {how}", folder, path, how == "truncated")


def controller_export_cases(o: Originals, out: Path, rng: random.Random, n: int
                            ) -> Iterator[Case]:
    model = onnx.load(str(o.controller_dir / C.CONTROLLER_FILE))
    meta = {p.key: p.value for p in model.metadata_props}
    for i in range(n):
        folder = export_copy(o.controller_dir, out / f"k{i}")
        path = folder / C.CONTROLLER_FILE
        if i % 4 == 0:  # graph metadata with required keys left out
            how = "metadata keys missing"
            gone = set(rng.sample((*C.COMMON_KEYS, *C.CONTROLLER_KEYS), rng.randint(1, 5)))
            del model.metadata_props[:]
            onnx.helper.set_model_props(model, {k: v for k, v in meta.items() if k not in gone})
            path.write_bytes(model.SerializeToString())
        elif i % 4 == 1:
            path = folder / C.MANIFEST_FILE
            how, damaged = whole_file_damage(path.read_bytes(), rng)
            path.write_bytes(damaged)
            how = f"manifest: {how}"
        else:
            how, damaged = whole_file_damage(path.read_bytes(), rng)
            path.write_bytes(damaged)
        yield Case("controller export", how, folder, path, how.endswith("truncated"))


def spec_cases(o: Originals, out: Path, rng: random.Random, n: int) -> Iterator[Case]:
    for i in range(n):
        folder = export_copy(o.spec_dir, out / f"s{i}")
        toml = folder / "strider.toml"
        path = toml if i % 2 == 0 else folder / "strider.xml"  # the spec, or its MJCF
        how, damaged = whole_file_damage(path.read_bytes(), rng)
        path.write_bytes(damaged)
        yield Case("spec", f"{path.suffix}: {how}", toml, path, how == "truncated")


GENERATORS: dict[str, Callable[..., Iterator[Case]]] = {
    "checkpoint": checkpoint_cases, "dataset": dataset_cases,
    "policy export": policy_export_cases, "controller export": controller_export_cases,
    "spec": spec_cases,
}


def load(case: Case) -> None:
    if case.kind == "checkpoint":
        load_checkpoint(case.target)
    elif case.kind == "dataset":
        Dataset.load(case.target)
    elif case.kind.endswith("export"):
        open_export(case.target).close()
    else:
        with restored_registry():
            load_spec_file(case.target)


def cli_argv(case: Case, out: Path) -> list[str]:
    """The `adapt` command that reads ``case.target`` first, writing under ``out``."""
    if case.kind == "checkpoint":
        return ["export-policy", str(case.target), "--out", str(out / "export"), "--no-verify"]
    if case.kind == "dataset":
        return ["train", "tiny", "--data", str(case.target), "--out", str(out / "run"),
                "--quiet"]
    if case.kind.endswith("export"):
        return ["deploy", str(case.target), "--robot", "sim:cheetah", "--duration", "0.1",
                "--fast", "--quiet", "--out", str(out / "report")]
    return ["sims", "collect", "--family", str(case.target), "--trajectories", "1",
            "--duration", "0.04", "--out", str(out / "data.npz")]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------ the property
def test_every_damaged_file_is_refused_in_one_shape(originals, tmp_path, capfd) -> None:
    rng = random.Random(SEED)
    outcomes: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    wrong: list[str] = []
    # The command line prints a traceback for any error but a ValueError (and two file
    # errors): count those, in process and through `adapt`, and every file a refusal wrote.
    tracebacks = written = 0
    cli_sample: dict[str, list[Case]] = {k: [] for k in GENERATORS}
    for kind, generate in GENERATORS.items():
        for case in generate(originals, tmp_path / kind.replace(" ", "_"), rng, CASES[kind]):
            by_kind[kind] += 1
            before = files_under(case.damaged.parent)
            try:
                load(case)
            except DamagedFileError as e:
                message = str(e)
                named = (str(case.damaged) in message
                         or str(case.damaged.parent) in message)  # a folder lacking a file
                if not (named and " is damaged or not " in message and "\n" not in message):
                    wrong.append(f"{kind} ({case.how}): {message}")
                outcomes["damaged"] += 1
                if len(cli_sample[kind]) < CLI_PER_KIND and rng.random() < 0.2:
                    cli_sample[kind].append(case)
            except ValueError as e:
                # A spec truncated after a complete line is valid TOML that lacks keys: the
                # spec's own validation refuses it, naming the file and the key.
                if not (kind == "spec" and case.truncation and str(case.target) in str(e)):
                    wrong.append(f"{kind} ({case.how}): {type(e).__name__}: {e}")
                outcomes[f"{case.how}, valid TOML, refused by the spec's validation"] += 1
            except Exception as e:  # noqa: BLE001  (any other type is the failure under test)
                wrong.append(f"{kind} ({case.how}): {type(e).__name__}: {e}")
                tracebacks += 1
            else:
                if not case.truncation:
                    wrong.append(f"{kind} ({case.how}): loaded")
                outcomes[f"{case.how}, still valid, loaded"] += 1
            if files_under(case.damaged.parent) != before:
                wrong.append(f"{kind} ({case.how}): the loader wrote files")
                written += 1
    total = sum(by_kind.values())
    assert not wrong, f"{len(wrong)} of {total} cases:\n" + "\n".join(wrong[:20])
    assert total >= MIN_CASES
    assert outcomes["damaged"] >= 0.9 * total  # truncations rarely leave a usable file

    # A sample through the command line: one line, exit status 2, nothing written.
    cli_cases = [c for cases in cli_sample.values() for c in cases]
    assert len(cli_cases) >= 30 and all(cli_sample.values())
    capfd.readouterr()
    for i, case in enumerate(cli_cases):
        out = tmp_path / "cli" / str(i)
        out.mkdir(parents=True)
        inputs = files_under(case.damaged.parent)
        with restored_registry():
            status = main(cli_argv(case, out))
        stdout, stderr = capfd.readouterr()
        tracebacks += "Traceback" in stdout + stderr
        written += len(files_under(out)) + (files_under(case.damaged.parent) != inputs)
        lines = stderr.splitlines()
        assert status == 2 and len(lines) == 1 and lines[0].startswith("adapt: error: "), (
            case, status, stderr)
        assert " is damaged or not " in lines[0] and str(case.damaged.parent) in lines[0]
    assert tracebacks == 0 and written == 0
    print(f"\ndamaged-file cases: {total}, {tracebacks} tracebacks, {written} files written "
          f"({len(cli_cases)} of them through adapt); by kind {dict(by_kind)}; outcomes "
          f"{dict(outcomes)}")


# ------------------------------------------------------------------ what is not damage
def test_unsafe_content_is_refused_as_unsafe_not_as_damaged(originals, tmp_path, capfd) -> None:
    """A checkpoint that is intact but holds a pickled object only arbitrary unpickling could
    read is refused as unsafe: its own words, never "damaged"."""

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil" / "checkpoint.pt"
    path.parent.mkdir()
    torch.save({"kind": KIND, "x": Evil()}, path)
    with pytest.raises(ValueError, match="is refused as unsafe") as refused:
        load_checkpoint(path)
    assert not isinstance(refused.value, DamagedFileError)
    assert main(["export-policy", str(path), "--out", str(tmp_path / "out"), "--no-verify"]) == 2
    stdout, stderr = capfd.readouterr()
    assert stderr.startswith("adapt: error: ") and len(stderr.splitlines()) == 1
    assert "refused as unsafe" in stderr and "damaged" not in stderr and "pwned" not in stdout
    assert not (tmp_path / "out").exists()


def test_the_error_survives_a_trip_between_processes(tmp_path) -> None:
    """Worker processes send errors back pickled: the fields and the message arrive whole."""
    import pickle

    (tmp_path / "x.npz").write_bytes(b"")
    with pytest.raises(DamagedFileError) as raised:
        Dataset.load(tmp_path / "x.npz")
    again = pickle.loads(pickle.dumps(raised.value))
    assert type(again) is DamagedFileError and str(again) == str(raised.value)
    assert (again.field, again.found) == ("dataset", "0 bytes (an empty file)")
    artifact = C.damaged(tmp_path / "m.json", *C.MANIFEST_KIND, "a JSON list")
    back = pickle.loads(pickle.dumps(artifact))
    assert isinstance(back, C.ArtifactError) and str(back) == str(artifact)
