"""Ctrl-C: one line on stderr saying what was kept, exit status 130 and never a traceback; an
interrupted `adapt train`, continued with the command that line names, ends with the data,
weights, optimiser, random state and metrics of a run never interrupted. A refused --resume
names every config key that differs."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from adapt_cli import main
from adaptive_control.checkpoint import load_checkpoint
from adaptive_control.runs import Run
from adaptive_control.training import loop as training
from sims.dataset import Dataset

ITERATIONS = 3
TRAIN = ["train", "tiny", "--quiet", "--set", f"iterations={ITERATIONS}",
         "--set", "collect.episode_s=1.2"]  # short episodes (24 decisions): many trials in seconds
ROOT = Path(__file__).resolve().parents[1]
ROOT_TEXT = str(ROOT) + os.sep


@pytest.fixture(autouse=True)
def sigint_handled():
    """Python's own SIGINT handler for each test, whatever the session inherited: a test run
    started in the background (``pytest &``) ignores SIGINT, which adapt rightly keeps, and which
    the processes a test starts would inherit."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``adapt ARGV`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def interrupt_line(rc: int, err: str) -> str:
    """The one line an interrupted command prints, checked."""
    assert rc == 130, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("adapt: interrupted: "), err
    return lines[0]


class Interrupter:
    """Ctrl-C at the k-th line of the project's code this process runs (``sys.settrace``
    counts them): the process sends itself SIGINT there, as a terminal would. The loop's steps
    are wrapped to tell where it landed: collecting, fitting, saving, or elsewhere.

    Lines of installed packages are not counted: in a real process an interrupt inside, say,
    torch's function transforms ends the process with it, but in this one it may leave torch's
    global state half-changed for the runs that follow."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count, self.at, self.landed = 0, None, None
        self.phases = ["elsewhere"]
        #: (phase, line count where it began), in order
        self.segments: list[tuple[str, int]] = []
        for name, phase in (("collect_iteration", "collecting"), ("fit", "fitting"),
                            ("save_checkpoint", "saving"), ("log_fit_curve", "saving")):
            monkeypatch.setattr(training, name, self._wrap(getattr(training, name), phase))
        monkeypatch.setattr(Dataset, "save", self._wrap(Dataset.save, "saving"))
        monkeypatch.setattr(Run, "log", self._wrap(Run.log, "saving"))

    def _wrap(self, f: Any, phase: str) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.phases.append(phase)
            self.segments.append((phase, self.count))
            try:
                return f(*args, **kwargs)
            finally:
                self.phases.pop()
                self.segments.append((self.phases[-1], self.count))
        return wrapped

    def _trace(self, frame: Any, event: str, arg: Any) -> Any:
        if self.landed is not None or not frame.f_code.co_filename.startswith(ROOT_TEXT):
            return None
        self.count += 1
        if self.at is not None and self.count >= self.at:
            self.landed = self.phases[-1]
            sys.settrace(None)
            signal.raise_signal(signal.SIGINT)
            return None
        return self._trace

    def run(self, argv: list[str], at: int | None = None) -> tuple[int, str, str]:
        """``run_cli(argv)``, interrupted at line ``at`` (None: counting lines, uninterrupted)."""
        self.count, self.at, self.landed, self.segments = 0, at, None, []
        sys.settrace(self._trace)
        try:
            return run_cli(argv)
        finally:
            sys.settrace(None)

    def lines_in(self, phase: str, total: int) -> list[tuple[int, int]]:
        """The [start, end) line ranges the last uninterrupted run spent in ``phase``."""
        bounds = [*self.segments, ("end", total)]
        return [(a, b) for (p, a), (_, b) in zip(bounds, bounds[1:], strict=False)
                if p == phase and b > a]


def resume_argv(line: str, argv: list[str]) -> list[str]:
    """The command the interrupt line names (`adapt ...` in backquotes), else ``argv`` again."""
    if "`" not in line:
        return argv
    words = shlex.split(line.split("`")[1])
    assert words[0] == "adapt" and "--resume" in words, line
    return words[1:]


def without_seconds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def assert_same(a: Any, b: Any, where: str) -> None:
    """Equal to the bit: tensors, arrays and nested containers of them."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(ref: Path, run: Path, iterations: int = ITERATIONS) -> None:
    """``run`` ended with ``ref``'s data, checkpoint and logs (wall times aside)."""
    for it in range(iterations):
        name = f"data/iter_{it:03d}.npz"
        with np.load(ref / name) as a, np.load(run / name) as b:
            assert set(a) == set(b)
            for key in a:
                if key == "stats":  # holds the collection's wall time
                    sa, sb = json.loads(str(a[key])), json.loads(str(b[key]))
                    sa.pop("seconds"), sb.pop("seconds")
                    assert sa == sb, name
                else:
                    np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")
    a, b = load_checkpoint(ref / "checkpoint.pt"), load_checkpoint(run / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == iterations
    assert without_seconds(json.loads(a.pop("metrics"))) == without_seconds(
        json.loads(b.pop("metrics")))
    assert_same(a, b, "checkpoint")
    assert (ref / "fit_curve.csv").read_text() == (run / "fit_curve.csv").read_text()
    rows = [without_seconds(list(csv.DictReader(open(p / "metrics.csv")))) for p in (ref, run)]
    assert rows[0] == rows[1]
    assert not (run / ".lock").exists()


# ------------------------------------------------------------------------ in this process
def test_ctrl_c_anywhere_in_train_is_one_line_and_resumes_to_the_same_run(tmp_path,
                                                                         monkeypatch):
    ref = tmp_path / "reference"
    assert run_cli([*TRAIN, "--out", str(ref)])[0] == 0  # also imports what training needs
    hit = Interrupter(monkeypatch)
    rc, _, err = hit.run([*TRAIN, "--out", str(tmp_path / "probe")])
    assert rc == 0 and err == ""
    total = hit.count
    rng = np.random.default_rng(7)
    # Where to interrupt: 6 lines each while collecting, fitting and saving, 4 anywhere.
    points = []
    for phase in ("collecting", "fitting", "saving"):
        ranges = hit.lines_in(phase, total)
        assert ranges, phase
        for a, b in (ranges[i] for i in rng.integers(len(ranges), size=6)):
            points.append(int(rng.integers(a, b)) + 1)
    points += [int(k) for k in rng.integers(1, total, size=4)]
    # Some resumed runs are interrupted again before they finish.
    again = set(rng.choice(len(points), size=4, replace=False).tolist())

    landed: dict[str, int] = {}
    trials = 0
    for i, k in enumerate(points):
        out = tmp_path / f"trial{i}"
        argv = [*TRAIN, "--out", str(out)]
        rc, _, err = hit.run(argv, at=k)
        line = interrupt_line(rc, err)
        trials += 1
        landed[hit.landed] = landed.get(hit.landed, 0) + 1
        saved = (load_checkpoint(out / "checkpoint.pt")["iteration"]
                 if (out / "checkpoint.pt").exists() else 0)
        if saved:
            assert f"{saved} of {ITERATIONS} iterations saved in {out}" in line, line
        argv = resume_argv(line, argv)
        if i in again:
            rc, _, err = hit.run(argv, at=int(rng.integers(1, total // 2)))
            if rc != 0:  # the resumed run was interrupted too: resume it once more
                argv = resume_argv(interrupt_line(rc, err), argv)
                trials += 1
        rc, out_text, err = run_cli(argv)
        assert rc == 0 and err == "", (line, err)
        assert out_text.startswith("checkpoint: ")
        assert_same_run(ref, out)
    assert trials >= 20
    assert {"collecting", "fitting", "saving"} <= set(landed), landed


def test_a_refused_resume_names_every_key_that_differs(tmp_path):
    out = tmp_path / "run"
    assert run_cli(["train", "tiny", "--quiet", "--out", str(out), "--set", "iterations=1"]
                   )[0] == 0
    before = (out / "checkpoint.pt").read_bytes()
    rc, _, err = run_cli(["train", "tiny", "--quiet", "--out", str(out), "--resume",
                          "--set", "iterations=2", "--set", "seed=5",
                          "--set", "optim.max_epochs=3", "--set", "grbal.hidden_sizes=[64,64]",
                          "--device", "cpu"])
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("adapt: error: --resume: "), err
    for change in ("iterations 1 -> 2", "seed 0 -> 5", "optim.max_epochs 2 -> 3",
                   "grbal.hidden_sizes [32, 32] -> [64, 64]"):
        assert change in lines[0], lines[0]
    # only those: the device is not part of what must match
    assert lines[0].count(" -> ") == 4 + 1, lines[0]  # four changes and "the run's -> given"
    assert (out / "checkpoint.pt").read_bytes() == before


def test_other_long_commands_say_what_was_kept(tmp_path, monkeypatch):
    import sims.collect

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(sims.collect, "collect_open_loop", interrupted)
    out = tmp_path / "d.npz"
    rc, _, err = run_cli(["sims", "collect", "--family", "cheetah-cripple", "--trajectories",
                          "1", "--duration", "0.1", "--out", str(out)])
    assert "nothing written" in interrupt_line(rc, err)
    assert not out.exists()


# ------------------------------------------------------------------------ real processes
def _wait_for(proc: subprocess.Popen, ready: Any, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.002)


def _mapped(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
def test_sigint_to_a_real_adapt_train_process(tmp_path):
    """SIGINT to `python -m adapt_cli train`: while the package is imported (numpy loading:
    the process ends at once, nothing written), while the command imports torch (the interrupt
    is acted on once that import has finished) and during training; each one line, exit 130,
    and what it names continues the run to the uninterrupted run's end."""
    # Six iterations: the run outlasts the wait after its first iteration's data appears.
    iterations, train = 6, [*TRAIN, "--set", "iterations=6"]
    ref = tmp_path / "reference"
    assert run_cli([*train, "--out", str(ref)])[0] == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    rng = np.random.default_rng(11)
    numpy_lib, torch_lib = "_multiarray_umath", "libtorch_cpu"
    for i, when in enumerate([numpy_lib, torch_lib, "training"]):
        out = tmp_path / f"p{i}"
        argv = [*train, "--out", str(out)]
        proc = subprocess.Popen([sys.executable, "-m", "adapt_cli", *argv], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if when == "training":
            _wait_for(proc, lambda o=out: (o / "data" / "iter_000.npz").exists())
            time.sleep(float(rng.uniform(0.0, 0.2)))
        else:
            _wait_for(proc, lambda lib=when, pid=proc.pid: _mapped(pid, lib))
        assert proc.poll() is None, "the command ended before the interrupt"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        line = interrupt_line(proc.returncode, err)
        if when == numpy_lib:
            assert line == "adapt: interrupted: nothing written"
            assert not out.exists()
            continue
        argv = resume_argv(line, argv)
        if when == torch_lib and "--resume" not in argv:  # landed before anything was saved
            assert line == "adapt: interrupted: nothing written" or (
                f"no iteration was saved in {out}" in line), line
        rc, _, err = run_cli(argv)
        assert rc == 0 and err == "", err
        assert_same_run(ref, out, iterations)


def _session(sid: int) -> list[int]:
    """The processes of session ``sid`` (a command started with ``start_new_session``)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after ")": state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_ctrl_c_at_a_terminal_reaches_the_workers_too_and_only_the_command_reports(tmp_path):
    """A terminal's Ctrl-C goes to the whole process group: with on-policy collection on two
    worker processes, still one line and exit 130, and no worker left behind."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [*TRAIN, "--out", str(out), "--set", "collect.workers=2",
            "--set", "collect.rollouts_per_iter=2"]
    proc = subprocess.Popen([sys.executable, "-m", "adapt_cli", *argv], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _wait_for(proc, lambda: len(_session(proc.pid)) > 1)  # the workers have started
        time.sleep(float(np.random.default_rng(3).uniform(0.0, 0.5)))
        assert proc.poll() is None, "the command ended before the interrupt"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    line = interrupt_line(proc.returncode, err)
    assert "iterations saved" in line or "no iteration" in line, line
    end = time.monotonic() + 10
    while _session(proc.pid) and time.monotonic() < end:  # terminated workers are reaped
        time.sleep(0.05)
    assert _session(proc.pid) == []


def test_an_interrupted_policy_training_names_the_command_that_continues_it(tmp_path,
                                                                            monkeypatch):
    import policies.training as policy_training

    real, calls = policy_training.rl2_iteration, []

    def interrupted_in_the_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(policy_training, "rl2_iteration", interrupted_in_the_second)
    out = tmp_path / "policy"
    argv = ["train-policy", "tiny", "--quiet", "--set", "method=rl2", "--set", "iterations=2",
            "--out", str(out)]
    line = interrupt_line(*run_cli(argv)[::2])
    assert f"1 of 2 iterations saved in {out}" in line, line
    rc, _, err = run_cli(resume_argv(line, argv))
    assert rc == 0 and err == "", err
    assert calls == [0, 1, 1]  # the interrupted iteration, and only it, ran again
    assert load_checkpoint(out / "checkpoint.pt")["iteration"] == 2
