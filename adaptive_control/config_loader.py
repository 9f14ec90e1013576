"""Typed configs from nested values: dataclasses built from TOML/YAML/JSON files, presets
and dotted ``key=value`` overrides, checked key by key.

An unknown key is refused with the allowed keys listed, a value of the wrong type or range with
the field, the value and what is allowed — always as a :class:`ConfigError`. Every typed config
loader reads through here (``adaptive_control.training.config``, ``policies.config``): presets,
then a file, then overrides (``layered_values``), into a dataclass (``build_dataclass``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration refused before any work: names the key, the value and what is allowed."""


#: Settings a table's earlier layers gave before a later layer named another kind (planner) for
#: it: kept where the newly named kind takes them, dropped otherwise (see ``_coerce_named``).
INHERITED = "<inherited>"


def _rename(node: dict[str, Any], keep: set[str] = frozenset()) -> dict[str, Any]:
    """``node`` about to be given another ``name``: its settings (but ``keep``) become
    inherited."""
    moved = {k: v for k, v in node.items() if k not in ("name", INHERITED, *keep)}
    return {**{k: node[k] for k in keep if k in node},
            INHERITED: {**node.get(INHERITED, {}), **moved}}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            old = out[k]
            renamed = "name" in v and v["name"] != old.get("name")
            out[k] = _merge(_rename(old) if renamed else old, v)
        else:
            out[k] = v
    return out


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(path: str, value: Any, tp: Any) -> Any:
    """Check and convert ``value`` to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a table of settings, got {value!r}")
        return build_dataclass(tp, value, path + ".")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{path}={value!r} is not allowed: allowed "
                              f"{', '.join(map(repr, typing.get_args(tp)))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}={value!r} must be a list")
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_coerce(f"{path}[{i}]", v, inner) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        kinds = _named_kinds(tp)
        if kinds and value is not None:
            return _coerce_named(path, value, kinds)
        for arg in typing.get_args(tp):
            try:
                return _coerce(path, value, arg)
            except ValueError:
                continue
        raise ConfigError(f"{path}={value!r} does not match {tp}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}={value!r} must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}={value!r} must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={value!r} must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}={value!r} must be a string")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{path}={value!r} must be empty")
        return None
    return value


def _named_kinds(tp: Any) -> dict[str, type]:
    """A union of dataclasses told apart by their first field ``name: Literal[...]`` (the
    planner configs) as {name: dataclass}; empty for any other union."""
    kinds: dict[str, type] = {}
    for arg in typing.get_args(tp):
        if arg is type(None):
            continue
        if not dataclasses.is_dataclass(arg):
            return {}
        name_type = _field_types(arg).get("name")
        if typing.get_origin(name_type) is not typing.Literal:
            return {}
        kinds[typing.get_args(name_type)[0]] = arg
    return kinds


def _coerce_named(path: str, value: Any, kinds: dict[str, type]) -> Any:
    """A table of one of ``kinds``, picked by its ``name`` (the first kind when not named), or
    a bare name (that kind's defaults). Its keys must be the named kind's; inherited settings
    (``INHERITED``) are kept where the kind takes them."""
    name_path = path
    if isinstance(value, str):
        value = {"name": value}
    elif isinstance(value, dict):
        name_path = f"{path}.name"
    else:
        raise ConfigError(f"{path}={value!r} must be a table of settings or one of "
                          f"{', '.join(map(repr, kinds))}")
    value = dict(value)
    inherited = value.pop(INHERITED, {})
    name = value.get("name", next(iter(kinds)))
    if not isinstance(name, str) or name not in kinds:
        raise ConfigError(f"{name_path}={name!r} is unknown: allowed {', '.join(kinds)}")
    cls = kinds[name]
    fields = _field_types(cls)
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{path}.{unknown[0]}' for {path}.name={name!r}: "
                          f"allowed keys at this level are {', '.join(sorted(fields))}")
    kept = {k: v for k, v in inherited.items() if k in fields}
    return build_dataclass(cls, {**kept, **value, "name": name}, path + ".")


def build_dataclass(cls: type, values: dict[str, Any], prefix: str = ""):
    """Construct ``cls`` from a nested dict, refusing unknown keys by name."""
    types_ = _field_types(cls)
    unknown = set(values) - set(types_)
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"unknown config key '{prefix}{key}': allowed keys at this level are "
                          f"{', '.join(sorted(types_))}")
    kwargs = {k: _coerce(prefix + k, v, types_[k]) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from e
    except ValueError as e:  # "CEMConfig.horizon=0 ..." -> "planner.horizon=0 ..."
        own = f"{cls.__name__}."
        if prefix and str(e).startswith(own):
            raise ConfigError(prefix + str(e)[len(own):]) from e
        if isinstance(e, ConfigError):
            raise
        # the configs' own checks (learners, planners, devices, families) name their field
        raise ConfigError(str(e)) from e


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value), the value read as TOML (numbers, bools, lists),
    falling back to a plain string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. optim.max_epochs=5)")
    key, raw = text.split("=", 1)
    keys = [k.strip() for k in key.split(".")]
    if not all(keys):
        raise ConfigError(f"override {text!r}: key={key.strip()!r} has an empty part: allowed "
                          "dotted names such as optim.max_epochs")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return keys, value


def _read_file(path: Path) -> Any:
    """A TOML, YAML or JSON (a run folder's config.json: re-run or vary that run) file's
    values; a file that does not parse is refused naming it."""
    import yaml

    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return yaml.safe_load(path.read_text()) or {}
    except (ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"config={str(path)!r} does not parse as {path.suffix[1:]}: "
                          f"{e}") from e


def layered_values(presets: Mapping[str, dict[str, Any]], path: str | Path | None = None,
                   preset: str | None = None, overrides: Sequence[str] = (),
                   upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                   ) -> dict[str, Any]:
    """A config as nested values: the preset, then the file (TOML, YAML, or a run folder's
    config.json; it may name a ``preset``; ``upgrade`` rewrites what older versions wrote),
    then the ``key=value`` overrides. Shared by every typed config loader.

    A layer that names another kind for a table (``--set planner.name=mppi``) starts it
    afresh: the settings of the layers below are kept only where the new kind takes them,
    while the settings the overrides give must all be the new kind's."""
    values: dict[str, Any] = {}
    file_values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config={str(path)!r}: no such file or preset (presets: "
                              f"{', '.join(presets)})")
        if path.suffix in (".toml", ".yaml", ".yml", ".json"):
            file_values = _read_file(path)
        else:
            raise ConfigError(f"config={str(path)!r}: allowed suffixes .toml, .yaml, .yml, "
                              ".json")
        if not isinstance(file_values, dict):
            raise ConfigError(f"config={str(path)!r} must hold a table of settings")
        file_values = dict(file_values if upgrade is None else upgrade(file_values))
        preset = file_values.pop("preset", preset)
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"preset={preset!r} is unknown: allowed {', '.join(presets)}")
        values = copy.deepcopy(presets[preset])
    values = _merge(values, copy.deepcopy(file_values))
    given: set[tuple[str, ...]] = set()  # what the overrides set, whatever their order
    for text in overrides:
        keys, value = parse_override(text)
        parent, node = None, values
        for k in keys[:-1]:
            parent, node = node, node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a table")
        if parent is not None and keys[-1] == "name" and node.get("name") != value:
            keep = {k for k in node if (*keys[:-1], k) in given}
            node = parent[keys[-2]] = _rename(node, keep)
        node[keys[-1]] = value
        given.add(tuple(keys))
    return values
