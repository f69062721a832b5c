"""One config loader: a YAML file (or a mapping) onto a typed stdlib dataclass.

Every command that reads a config (``train``, ``compare``, ``benchmark``) calls :func:`load`:

>>> cfg = load(Config, "agents/configs/irl-ring8.yaml", ["seed=3", "env.num_envs=64"])
... # doctest: +SKIP

The config classes stay plain ``@dataclass``es (defaults, docstrings and ``__post_init__``
checks live there, once); pydantic's :class:`~pydantic.TypeAdapter` validates the data
against their annotations in place, without a second schema. Rules, all checked before any
work starts:

- an unknown key at any depth (inside dataclass-typed sections and lists of them) is a
  :class:`ConfigError` (a ``ValueError``) that names every unknown dotted key and lists the
  valid keys of its section; ``dict``-typed fields (``algo_kwargs``, ``kwargs``) are free;
- a value of the wrong type is a :class:`ConfigTypeError` (a ``TypeError`` and a
  ``ValueError``) naming the dotted key, the expected type and the value. Validation is
  pydantic's strict mode on the YAML data model: ``3`` is not a ``str``, ``"3"`` not an
  ``int``, ``true`` not an ``int``, ``1.5`` not an ``int``; an int goes into a ``float``
  field (YAML writes ``1`` for ``1.0``), a list into a ``tuple`` field, and a string that
  YAML 1.1 leaves unparsed but that is a float (``3e-4``) into a ``float`` field;
- a missing required key, a ``Literal`` outside its choices, ``null`` where the annotation
  has no ``None``: the same error;
- a ``ValueError`` raised by a dataclass's ``__post_init__`` comes out as a
  :class:`ConfigError` with the same message, prefixed by where it was raised.

Overrides are ``"dotted.key=value"`` strings, the value parsed by ``yaml.safe_load``
(``seed=3``, ``env.guidance_weights=[0, 1, 2]``, ``algo.logit_clip=null``); see
:func:`apply_overrides`. :func:`to_dict` turns a config back into plain YAML-safe data that
:func:`load` reads into an equal config (the ``config.yaml`` a run saves and ``--resume``
reads).

Why pydantic (see docs/foundation.md): a well-kept library that validates stdlib
dataclasses in place, reports every error with its exact location, and is already a
dependency; OmegaConf's structured configs would do as well but add a second config object
type (``DictConfig``) beside the dataclasses.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

__all__ = [
    "ConfigError",
    "ConfigTypeError",
    "load",
    "to_dict",
    "apply_overrides",
    "valid_keys",
    "read_yaml",
]


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, malformed override, failed check."""


class ConfigTypeError(ConfigError, TypeError):
    """A config value of the wrong type (also a ``TypeError``)."""


# ---------------------------------------------------------------------------------------------
# Annotations


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Field name → resolved annotation of dataclass ``cls`` (init fields only)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def _arms(tp: Any) -> tuple[Any, ...]:
    """The members of a union (``X | None`` → ``(X, NoneType)``), else ``(tp,)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return (tp,)


def _section_class(tp: Any) -> type | None:
    """The dataclass behind ``tp`` (``C`` or ``C | None``), else None."""
    found = [a for a in _arms(tp) if dataclasses.is_dataclass(a) and isinstance(a, type)]
    return found[0] if len(found) == 1 else None


def _item_type(tp: Any) -> Any | None:
    """The element type of ``list[X]`` / ``tuple[X, ...]`` (or of an optional one), else None."""
    for arm in _arms(tp):
        if typing.get_origin(arm) in (list, tuple, Sequence):
            args = [a for a in typing.get_args(arm) if a is not Ellipsis]
            return args[0] if len(set(args)) == 1 else None
    return None


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def valid_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of dataclass ``cls``, sections included (``["env", "env.preset",
    ...]``), sorted."""
    out = []
    for name, tp in _hints(cls).items():
        out.append(prefix + name)
        sub = _section_class(tp)
        if sub is not None:
            out += valid_keys(sub, f"{prefix}{name}.")
    return sorted(out)


def _annotation_at(cls: type, loc: Sequence[str | int]) -> Any | None:
    """The annotation that a pydantic error location points at (None if unknown)."""
    tp: Any = cls
    for part in loc:
        if isinstance(part, int):
            tp = _item_type(tp)
        elif (sub := _section_class(tp)) is not None and part in _hints(sub):
            tp = _hints(sub)[part]
        else:
            return None
        if tp is None:
            return None
    return tp


# ---------------------------------------------------------------------------------------------
# Checks that pydantic leaves to the caller


def _unknown_keys(cls: type, data: Any, prefix: str, out: dict[str, list[str]]) -> None:
    """Collect ``{section: [unknown dotted keys]}`` of ``data`` against dataclass ``cls``."""
    if not isinstance(data, Mapping):
        return  # a type error, reported by the validation
    hints = _hints(cls)
    for key, value in data.items():
        if key not in hints:
            out.setdefault(prefix, []).append(f"{prefix}{key}")
            continue
        tp = hints[key]
        if (sub := _section_class(tp)) is not None:
            _unknown_keys(sub, value, f"{prefix}{key}.", out)
        elif (item := _section_class(_item_type(tp))) is not None and isinstance(value, list):
            for i, v in enumerate(value):
                _unknown_keys(item, v, f"{prefix}{key}[{i}].", out)


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)", re.IGNORECASE)


def _yaml11_floats(tp: Any, value: Any) -> Any:
    """``value`` with the strings that YAML 1.1 leaves unparsed (``3e-4``) turned into
    floats where ``tp`` expects a float; everything else unchanged (a new container)."""
    if isinstance(value, str):
        arms = _arms(tp)
        if float in arms and str not in arms and _FLOAT.fullmatch(value.strip()):
            return float(value)
        return value
    if isinstance(value, Mapping) and (sub := _section_class(tp)) is not None:
        hints = _hints(sub)
        return {k: _yaml11_floats(hints.get(k, Any), v) for k, v in value.items()}
    if isinstance(value, list) and (item := _item_type(tp)) is not None:
        return [_yaml11_floats(item, v) for v in value]
    return value


def _plain(value: Any, key: str) -> Any:
    """JSON default hook: plain YAML data only (no dates, sets, objects)."""
    raise ConfigTypeError(f"{key}: {value!r} ({type(value).__name__}) is not plain YAML data")


# ---------------------------------------------------------------------------------------------
# Public API


def apply_overrides(
    data: Mapping[str, Any], overrides: Sequence[str], cls: type | None = None
) -> dict[str, Any]:
    """A copy of ``data`` with dotted ``key=value`` overrides set (values parsed as YAML).

    ``a.b=1`` creates the section ``a`` if it is missing; ``a.b=null`` sets None. With
    ``cls`` (the config dataclass), an override of a key that ``cls`` does not have is a
    :class:`ConfigError` listing the valid keys; keys inside ``dict``-typed fields are free.
    """
    if isinstance(overrides, str):
        raise ConfigTypeError(f"overrides must be a list of 'key=value' strings, got {overrides!r}")
    out = copy.deepcopy(dict(data))
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. seed=3)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty key")
        if cls is not None:
            _check_override_key(cls, parts, item)
        node = out
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {key!r}: {p!r} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def _check_override_key(cls: type, parts: list[str], item: str) -> None:
    tp: Any = cls
    for i, p in enumerate(parts):
        sub = _section_class(tp)
        if sub is None:
            if i > 0 and dict in (typing.get_origin(a) or a for a in _arms(tp)):
                return  # keys of a dict-typed field are free
            raise ConfigError(f"override {item!r}: {'.'.join(parts[:i])!r} is not a section")
        hints = _hints(sub)
        if p not in hints:
            prefix = "".join(f"{q}." for q in parts[:i])
            raise ConfigError(
                f"unknown key(s) [{'.'.join(parts[: i + 1])!r}] in override {item!r}; "
                f"valid: {[prefix + k for k in sorted(hints)]}"
            )
        tp = hints[p]


def load(
    cls: type,
    source: str | Path | Mapping[str, Any],
    overrides: Sequence[str] | None = None,
    *,
    where: str | None = None,
):
    """Read ``source`` (a YAML file path or a mapping), apply ``overrides`` and return a
    validated instance of dataclass ``cls``.

    :param cls: the config dataclass (nested dataclasses, lists of them, Optional, Literal,
        list/tuple/dict fields).
    :param source: path of a YAML mapping, or the mapping itself (e.g. a saved config.yaml).
    :param overrides: ``"dotted.key=value"`` strings (see :func:`apply_overrides`).
    :param where: name used in error messages (default: the file name, or ``cls``'s name).
    :raises FileNotFoundError: the file does not exist.
    :raises ConfigError: unknown keys (listing the valid ones), a malformed override, a
        failed ``__post_init__`` check.
    :raises ConfigTypeError: a value of the wrong type, a missing required key.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"cls must be a dataclass type, got {cls!r}")
    if isinstance(source, Mapping):
        data, where = dict(source), where or cls.__name__
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        where = where or path.name
        data = read_yaml(path)
        data = {} if data is None else data
    else:
        raise TypeError(f"source must be a path or a mapping, got {type(source).__name__}")
    if not isinstance(data, Mapping):
        raise ConfigTypeError(f"{where} must be a YAML mapping, got {type(data).__name__}")
    data = apply_overrides(data, overrides or [], cls)
    unknown: dict[str, list[str]] = {}
    _unknown_keys(cls, data, "", unknown)
    if unknown:
        raise ConfigError(
            "; ".join(
                f"unknown key(s) {keys} in {where}; valid: {_section_keys(cls, section)}"
                for section, keys in unknown.items()
            )
        )
    data = _yaml11_floats(cls, data)
    text = json.dumps(data, allow_nan=True, default=lambda v: _plain(v, where))
    try:
        return _adapter(cls).validate_json(text, strict=True)
    except ValidationError as e:
        raise _config_error(cls, e, where) from None


def _section_keys(cls: type, section: str) -> list[str]:
    """Valid dotted keys of the section ``"env."`` / ``"envs[0]."`` / ``""`` of ``cls``."""
    tp: Any = cls
    for part in re.findall(r"([^.\[\]]+)|\[(\d+)\]", section):
        name, index = part
        tp = _item_type(tp) if index else _hints(_section_class(tp))[name]
    return [section + k for k in sorted(_hints(_section_class(tp)))]


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _config_error(cls: type, err: ValidationError, where: str) -> ConfigError:
    """One readable error from pydantic's list: dotted key, expected type, value."""
    lines, value_errors = [], []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = _dotted(loc)
        if e["type"] == "value_error":  # raised by a __post_init__ check
            value_errors.append(f"{key}: {e['ctx']['error']}" if loc else str(e["ctx"]["error"]))
            continue
        if e["type"] == "missing":
            lines.append(f"{key}: missing required key")
            continue
        tp = _annotation_at(cls, loc)
        expected = f"expected {_type_name(tp)}" if tp is not None else e["msg"]
        lines.append(f"{key}: {expected}, got {e.get('input')!r} ({e['msg']})")
    if lines:
        return ConfigTypeError(f"invalid value(s) in {where}: " + "; ".join(lines))
    return ConfigError(f"{where}: " + "; ".join(value_errors))


def read_yaml(path: str | Path) -> Any:
    """The YAML data of a file; a syntax error is a :class:`ConfigError` naming the file
    and the line (not ``"<unicode string>"``), on one line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        with open(path, encoding="utf-8") as f:  # a stream: YAML's marks carry its name
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{str(path)!r} is not valid YAML: {' '.join(str(e).split())}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{str(path)!r} is not a UTF-8 text file: {e}") from None


def to_dict(obj: Any) -> Any:
    """A config dataclass as plain YAML-safe data: nested dicts, lists (tuples become lists),
    str/int/float/bool/None; :func:`load` reads it back into an equal config."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
