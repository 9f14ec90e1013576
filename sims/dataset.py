"""Trajectory datasets: episodes of one robot, labelled by condition, stored as ``.npz``.

A ``Dataset`` holds ``N`` episodes padded to the longest, ``T`` transitions:

  obs           [N, T+1, obs_dim] float32  observations the controller saw (noisy if the
                                            condition adds observation noise)
  act           [N, T, act_dim]   float32  actions applied
  lengths       [N]               int64    transitions of each episode (1..T); past its length
                                            an episode repeats its last observation, action 0
  condition_id  [N]               int64    index into ``conditions``; -1 (``UNLABELLED``) when
                                            the episode's condition is not known
  conditions    [C]               str      each condition as JSON (``Condition.to_json``)
  robot, family, source           str      provenance

Files hold these arrays (no pickle anywhere; loading uses ``allow_pickle=False``), or, as a
logger writes them, the episodes one after another: ``obs`` ``[sum(lengths) + E, obs_dim]``
(each episode's ``T_e + 1`` observations), ``act`` ``[sum(lengths), act_dim]`` and
``lengths`` ``[E]``. docs/data.md describes both layouts for writing one by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from file_errors import DamagedFileError, missing
from sims.atomic import atomic_write
from sims.conditions import Condition, parse_condition

#: 2 added ``lengths`` (episodes of different lengths) and unlabelled episodes.
FORMAT_VERSION = 2
READS_VERSIONS = (1, 2)
#: ``condition_id`` of an episode whose condition is not known.
UNLABELLED = -1


@dataclass
class Dataset:
    obs: np.ndarray
    act: np.ndarray
    condition_id: np.ndarray
    conditions: list[str]
    robot: str
    family: str = ""
    source: str = ""  # "random", "open_loop", "closed_loop:<controller>", "data", ...
    stats: dict = field(default_factory=dict)  # collection statistics (dropped rollouts, ...)
    lengths: np.ndarray | None = None  # transitions per episode; None: all T

    def __post_init__(self) -> None:
        self.obs = np.asarray(self.obs, dtype=np.float32)
        self.act = np.asarray(self.act, dtype=np.float32)
        self.condition_id = np.asarray(self.condition_id, dtype=np.int64)
        for name, a, dims in (("obs", self.obs, "[N, T+1, obs_dim]"),
                              ("act", self.act, "[N, T, act_dim]")):
            if a.ndim != 3:
                raise ValueError(f"Dataset.{name} has shape {a.shape}: allowed {dims}")
        n, t1 = self.obs.shape[:2]
        if self.act.shape[:2] != (n, t1 - 1):
            # Neither array is wrong alone: say what each holds and how they must agree.
            raise ValueError(f"Dataset.obs has shape {self.obs.shape} ({n} episodes of {t1} "
                             f"observations) and act {self.act.shape} "
                             f"({self.act.shape[0]} episodes of {self.act.shape[1]} actions): "
                             "allowed the same episodes, each with one observation more than "
                             "actions (obs [N, T+1, obs_dim], act [N, T, act_dim])")
        if self.condition_id.shape != (n,):
            raise ValueError(f"Dataset.condition_id has shape {self.condition_id.shape}: "
                             f"expected ({n},)")
        if n and (self.condition_id.min() < UNLABELLED
                  or self.condition_id.max() >= len(self.conditions)):
            raise ValueError(f"Dataset.condition_id indexes outside Dataset.conditions: allowed "
                             f"{UNLABELLED} (unlabelled) .. {len(self.conditions) - 1}")
        self.lengths = _check_lengths(self.lengths, n, t1 - 1)
        bad = [r for r in (_nonfinite("obs", self.obs, self.lengths + 1),
                           _nonfinite("act", self.act, self.lengths)) if r]
        if bad:
            total = sum(count for count, _ in bad)
            raise ValueError(f"Dataset holds {total} NaN/inf values "
                             f"({'; '.join(text for _, text in bad)}); refusing it")
        self._pad()

    def _pad(self) -> None:
        """Past its length an episode repeats its last observation, with action 0: whatever a
        file held there, padding is finite and the same everywhere."""
        if not (self.lengths < self.horizon).any():
            return
        steps = np.arange(self.horizon + 1)[None, :]
        last = np.minimum(steps, self.lengths[:, None])
        self.obs = np.take_along_axis(self.obs, last[..., None], axis=1)
        self.act = np.where(self.transition_mask()[..., None], self.act, np.float32(0))

    # ------------------------------------------------------------------ views
    @property
    def n_trajectories(self) -> int:
        return self.obs.shape[0]

    @property
    def horizon(self) -> int:
        """Transitions of the longest episode (the padded length)."""
        return self.act.shape[1]

    @property
    def n_transitions(self) -> int:
        return int(self.lengths.sum())

    def transition_mask(self) -> np.ndarray:
        """``[N, T]`` bool: True where a transition is data, False on padding."""
        return np.arange(self.horizon)[None, :] < self.lengths[:, None]

    def condition(self, i: int) -> Condition | None:
        """The condition of episode ``i``; None when it is unlabelled."""
        cid = int(self.condition_id[i])
        return None if cid == UNLABELLED else Condition.from_json(self.conditions[cid])

    def transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (obs, act, next_obs) of the episodes, padding left out, as ``[transitions, dim]``."""
        mask = self.transition_mask()
        return self.obs[:, :-1][mask], self.act[mask], self.obs[:, 1:][mask]

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.obs[index], self.act[index], self.condition_id[index],
                       list(self.conditions), self.robot, self.family, self.source,
                       dict(self.stats), self.lengths[index])

    # ------------------------------------------------------------------ combine
    @staticmethod
    def concatenate(parts: list[Dataset]) -> Dataset:
        """Join datasets of one robot, merging their condition tables; shorter episodes are
        padded to the longest."""
        if not parts:
            raise ValueError("Dataset.concatenate needs at least one dataset")
        robots = {p.robot for p in parts}
        if len(robots) != 1:
            raise ValueError(f"cannot concatenate datasets of different robots: {sorted(robots)}")
        table: dict[str, int] = {}
        ids = []
        for p in parts:
            remap = np.array([table.setdefault(c, len(table)) for c in p.conditions] + [UNLABELLED],
                             dtype=np.int64)
            ids.append(remap[p.condition_id])  # UNLABELLED (-1) picks the last entry: itself
        horizon = max(p.horizon for p in parts)
        sources = sorted({p.source for p in parts})
        return Dataset(
            np.concatenate([_extend(p.obs, horizon + 1) for p in parts]),
            np.concatenate([_extend(p.act, horizon) for p in parts]),
            np.concatenate(ids), list(table), parts[0].robot, parts[0].family,
            "+".join(sources), {"parts": len(parts)},
            np.concatenate([p.lengths for p in parts]),
        )

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write atomically: a crash mid-write never leaves a truncated file at ``path``."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"dataset path={str(path)!r} must end in .npz")
        with atomic_write(path) as f:
            np.savez_compressed(
                f, obs=self.obs, act=self.act, lengths=self.lengths,
                condition_id=self.condition_id,
                conditions=np.array(self.conditions, dtype=np.str_),
                robot=np.array(self.robot), family=np.array(self.family),
                source=np.array(self.source), stats=np.array(json.dumps(self.stats)),
                format_version=np.array(FORMAT_VERSION),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Read either layout (docs/data.md) without unpickling anything; a file that is no
        such archive (truncated, emptied, of another type, without obs or act) is a
        :class:`~file_errors.DamagedFileError`."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"dataset path={str(path)!r} must end in .npz")
        if not path.is_file():
            raise ValueError(f"dataset path={str(path)!r}: no such file")
        arrays = _read_npz(path)
        lacking = _missing_arrays(arrays)
        if lacking:
            raise _damaged(path, missing("array", lacking, arrays))
        return cls.from_arrays(arrays, f"dataset {str(path)!r}")

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], where: str = "dataset") -> Dataset:
        """A dataset from the arrays of either file layout (what ``np.load`` gives)."""
        lacking = _missing_arrays(arrays)
        if lacking:
            raise ValueError(f"{where} lacks arrays {lacking} (it holds {sorted(arrays)}); "
                             "see docs/data.md for the layout")
        version = arrays.get("format_version", np.array(FORMAT_VERSION))
        if version.shape != () or version.dtype.kind not in "iu":
            raise ValueError(f"{where}: format_version={version!r}: allowed one integer")
        version = int(version)
        if version not in READS_VERSIONS:
            raise ValueError(f"{where} has format_version={version}: this toolkit reads "
                             f"{', '.join(map(str, READS_VERSIONS))}")
        obs, act = arrays["obs"], arrays["act"]
        for name, a in (("obs", obs), ("act", act)):
            if a.dtype.kind != "f":
                raise ValueError(f"{where}: {name} has dtype {a.dtype}: allowed floating point "
                                 "(float16, float32, float64)")
        lengths = arrays.get("lengths")
        if lengths is not None and (lengths.ndim != 1 or lengths.dtype.kind not in "iu"):
            raise ValueError(f"{where}: lengths has shape {lengths.shape} and dtype "
                             f"{lengths.dtype}: allowed one integer per episode")
        if obs.ndim == 2:
            obs, act = _episodes_to_trajectories(obs, act, lengths, where)
        elif obs.ndim != 3:
            raise ValueError(f"{where}: obs has shape {obs.shape}: allowed [N, T+1, obs_dim] "
                             "(episodes of one length) or [observations, obs_dim] with lengths")
        condition_id, conditions = _labels(arrays, obs.shape[0], where)
        try:
            return cls(obs, act, condition_id, conditions,
                       _text(arrays, "robot"), _text(arrays, "family"), _text(arrays, "source"),
                       json.loads(_text(arrays, "stats") or "{}"), lengths)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e


# ---------------------------------------------------------------------- reading files
def _damaged(path: Path, found: str | None = None) -> DamagedFileError:
    return DamagedFileError("dataset", path, "a dataset",
                            "an .npz archive of obs and act arrays (docs/data.md)", found)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` archive at ``path``, read with ``allow_pickle=False``."""
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy's and zipfile's errors for bytes that are no .npz archive
        raise _damaged(path) from e
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise _damaged(path, f"one .npy array of shape {z.shape}, not an archive of arrays")
    arrays = {}
    with z:
        try:
            bad = z.zip.testzip()
        except Exception as e:  # a member whose compressed bytes no longer decompress
            raise _damaged(path) from e
        if bad is not None:
            raise _damaged(path, f"member {bad!r} whose bytes fail its checksum")
        for key in z.files:
            if _holds_objects(z, key):
                raise ValueError(f"dataset {str(path)!r}: array {key!r} holds Python objects, "
                                 "which are read only by unpickling: store numbers, and "
                                 "strings as dtype str")
            try:
                value = z[key]
            except Exception as e:  # a member whose .npy header or data is damaged
                raise _damaged(path, f"member {key!r} that is no readable .npy array") from e
            if not isinstance(value, np.ndarray):  # numpy hands other members over as bytes
                raise _damaged(path, f"member {key!r} that is no .npy array")
            arrays[key] = value
    return arrays


def _holds_objects(z: np.lib.npyio.NpzFile, key: str) -> bool:
    """Whether the ``.npy`` header of member ``key`` declares Python objects (readable only
    by unpickling); False for a header that cannot be read (reading the array says why)."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with z.zip.open(f"{key}.npy") as f:
            reader = readers.get(np.lib.format.read_magic(f))
            return reader is not None and reader(f)[2].hasobject
    except Exception:
        return False


def _missing_arrays(arrays: Mapping[str, np.ndarray]) -> list[str]:
    return sorted({"obs", "act"} - set(arrays))


# ---------------------------------------------------------------------- layout helpers
def _check_lengths(lengths: np.ndarray | None, n: int, horizon: int) -> np.ndarray:
    if lengths is None:
        return np.full(n, horizon, dtype=np.int64)
    lengths = np.asarray(lengths)
    if lengths.shape != (n,) or (n and lengths.dtype.kind not in "iu"):
        raise ValueError(f"Dataset.lengths has shape {lengths.shape} and dtype {lengths.dtype}: "
                         f"expected ({n},) integers, the transitions of each episode")
    bad = np.flatnonzero((lengths < 1) | (lengths > horizon))
    if len(bad):
        raise ValueError(f"Dataset.lengths[{bad[0]}]={lengths[bad[0]]}: allowed 1..{horizon} "
                         "(transitions of that episode)")
    return lengths.astype(np.int64)


def _nonfinite(name: str, a: np.ndarray, lengths: np.ndarray) -> tuple[int, str] | None:
    """NaN and inf values in the first ``lengths[i]`` rows of each episode ``a[i]``, counted."""
    rows = np.arange(a.shape[1])[None, :, None] < lengths[:, None, None]
    nan, inf = np.isnan(a) & rows, np.isinf(a) & rows
    n_nan, n_inf = int(nan.sum()), int(inf.sum())
    if not n_nan + n_inf:
        return None
    episodes = np.flatnonzero((nan | inf).any(axis=(1, 2)))
    shown = ", ".join(map(str, episodes[:10])) + (
        f", ... ({len(episodes)} episodes)" if len(episodes) > 10 else "")
    word = "episode" if len(episodes) == 1 else "episodes"
    return n_nan + n_inf, f"{name} has {n_nan} NaN and {n_inf} inf values in {word} {shown}"


def _extend(a: np.ndarray, length: int) -> np.ndarray:
    """``a`` [N, t, d] zero-padded along time to ``length`` (the Dataset fills the padding)."""
    return np.pad(a, ((0, 0), (0, length - a.shape[1]), (0, 0)))


def _episodes_to_trajectories(obs: np.ndarray, act: np.ndarray, lengths: np.ndarray | None,
                              where: str) -> tuple[np.ndarray, np.ndarray]:
    """The logger layout (episodes one after another) as ``[E, T+1, obs_dim]`` and
    ``[E, T, act_dim]``, zero-padded to the longest episode."""
    if lengths is None:
        raise ValueError(f"{where}: obs is [observations, obs_dim] ({obs.shape}), so lengths "
                         "[episodes] must say where each episode ends; see docs/data.md")
    if act.ndim != 2:
        raise ValueError(f"{where}: act has shape {act.shape}: with obs [observations, obs_dim] "
                         "it must be [actions, act_dim]")
    if len(lengths) == 0 or lengths.min() < 1:
        raise ValueError(f"{where}: lengths={lengths.tolist()[:10]}: allowed at least one "
                         "episode, each of >= 1 transition")
    e, total = len(lengths), int(lengths.sum())
    if obs.shape[0] != total + e or act.shape[0] != total:
        raise ValueError(
            f"{where}: {e} episodes of {total} transitions in all (lengths) need "
            f"{total + e} observations (each episode's transitions + 1) and {total} actions; "
            f"obs has {obs.shape[0]} rows and act {act.shape[0]}")
    horizon = int(lengths.max())
    obs_out = np.zeros((e, horizon + 1, obs.shape[1]), dtype=obs.dtype)
    act_out = np.zeros((e, horizon, act.shape[1]), dtype=act.dtype)
    o = a = 0
    for i, t in enumerate(lengths.tolist()):
        obs_out[i, :t + 1] = obs[o:o + t + 1]
        act_out[i, :t] = act[a:a + t]
        o, a = o + t + 1, a + t
    return obs_out, act_out


def _labels(arrays: Mapping[str, np.ndarray], n: int, where: str) -> tuple[np.ndarray, list[str]]:
    """``condition_id`` and ``conditions`` (JSON or the `adapt` syntax, stored as JSON); every
    episode unlabelled when the file has neither."""
    has = [k for k in ("condition_id", "conditions") if k in arrays]
    if not has:
        return np.full(n, UNLABELLED, dtype=np.int64), []
    if len(has) == 1:
        raise ValueError(f"{where} holds {has[0]} without "
                         f"{({'condition_id', 'conditions'} - set(has)).pop()}: give both "
                         "(labelled episodes) or neither (unlabelled)")
    ids, table = arrays["condition_id"], arrays["conditions"]
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{where}: condition_id has dtype {ids.dtype}: allowed integers")
    if table.ndim != 1 or table.dtype.kind not in "US":
        raise ValueError(f"{where}: conditions has shape {table.shape} and dtype {table.dtype}: "
                         "allowed one string per condition")
    conditions = []
    for i, text in enumerate(str(c) for c in table):
        try:
            cond = (Condition.from_json(text) if text.lstrip().startswith("{")
                    else parse_condition(text))
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{where}: conditions[{i}]={text!r}: {e}") from e
        conditions.append(cond.to_json())
    return ids, conditions


def _text(arrays: Mapping[str, np.ndarray], key: str) -> str:
    return str(arrays[key]) if key in arrays else ""
