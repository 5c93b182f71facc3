"""Dataclass configs <-> YAML: apply mappings and ``key=value`` values with type checks, write them
with every field's docstring, and save them beside outputs. Knows nothing of ELMD's sections
(:mod:`elmd.config` assembles those), so any package may use it without importing the others.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import typing
from dataclasses import fields, is_dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from elmd.errors import ConfigError
from elmd.io import atomic_write_text


def _apply_dict(obj, raw: dict, where: str, prefix: str = "") -> None:
    for key, value in raw.items():
        if isinstance(value, dict) and is_dataclass(getattr(obj, key, None)):
            _apply_dict(getattr(obj, key), value, where, f"{prefix}{key}.")
        else:
            _set_path(obj, key, value, where, prefix)


def _set_path(obj, dotted: str, value, where: str, prefix: str = "") -> None:
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        names = [f.name for f in fields(obj)]
        if part not in names:
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"did you mean '{prefix}{'.'.join(parts[:i] + close)}'?" if close else f"valid: {names}"
            raise ConfigError(f"{where}: unknown config key '{prefix}{'.'.join(parts[: i + 1])}' — {hint}")
        if i == len(parts) - 1:
            setattr(obj, part, _coerce(value, _field_type(type(obj), part), f"{where}: {prefix}{dotted}"))
        else:
            obj = getattr(obj, part)
            if not is_dataclass(obj):
                raise ConfigError(f"{where}: '{prefix}{'.'.join(parts[: i + 1])}' has no sub-keys")


def _field_type(cls, name: str):
    return typing.get_type_hints(cls)[name]


def _coerce(value, tp, where: str):
    """Check ``value`` against the field's annotation, converting int->float and str->number."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping")
        obj = tp()
        _apply_dict(obj, value, where)
        return obj
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r} — write e.g. [a,b]")
        return [_coerce(v, args[0], where) for v in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r} — write e.g. {{a: b}}")
        return {str(k): _coerce(v, args[1], where) for k, v in value.items()} if args else dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            num = float(value) if tp is float else value if isinstance(value, int) else int(str(value), 0)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
        return num
    if tp is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def format_config(cfg, with_docs: bool = False, compact: bool = False) -> str:
    """YAML text of ``cfg``; with ``with_docs`` each field is preceded by its docstring;
    ``compact`` writes one line per section (what commands print at start)."""
    if compact:
        return "".join(
            f"{k}: " + yaml.safe_dump(v, sort_keys=False, allow_unicode=True, default_flow_style=True, width=10**6)
            for k, v in config_to_dict(cfg).items()
        )
    if not with_docs:
        return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)
    return "\n".join(_doc_lines(cfg, 0)) + "\n"


def _doc_lines(obj, depth: int) -> list[str]:
    out, pad, docs = [], "  " * depth, field_docs(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        for line in docs.get(f.name, "").splitlines():
            out.append(f"{pad}# {line.strip()}")
        if is_dataclass(value):
            out += [f"{pad}{f.name}:"] + _doc_lines(value, depth + 1)
        else:
            dumped = yaml.safe_dump({f.name: value}, allow_unicode=True, default_flow_style=True, width=1000)
            out.append(pad + dumped.strip()[1:-1])
    return out


@lru_cache(maxsize=None)
def field_docs(cls) -> dict[str, str]:
    """Docstrings written under dataclass fields (the string literal after ``name: type = ...``)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for prev, node in zip(body, body[1:]):
        if (
            isinstance(prev, ast.AnnAssign)
            and isinstance(prev.target, ast.Name)
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            docs[prev.target.id] = inspect.cleandoc(node.value.value)
    return docs


def save_config(cfg, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically."""
    path = Path(path)
    atomic_write_text(path, format_config(cfg))
    return path


# --- validation -------------------------------------------------------------------------------------
# Every config dataclass may define ``validate(self, prefix)``: it checks its values and raises a
# one-line :class:`ConfigError` naming ``prefix.key``, the value and the allowed range (the helpers
# below write that line). :func:`validate_config` calls them for a whole config tree, section by
# section; elmd.config calls it after a file / overrides are applied.

DEVICE_HELP = "auto, cpu, cuda or cuda:N"


def bad_value(prefix: str, key: str, value, allowed: str, verb: str = "is out of range"):
    """Raise the one-line error: ``prefix.key=value is out of range — must be ALLOWED``."""
    name = f"{prefix}.{key}" if prefix else key
    raise ConfigError(f"{name}={value!r} {verb} — must be {allowed}")


def check_choice(prefix: str, obj, key: str, choices) -> None:
    """``obj.key`` is one of ``choices``."""
    value = getattr(obj, key)
    if value not in choices:
        bad_value(prefix, key, value, f"one of {', '.join(map(str, choices))}", "is not a choice")


def check_range(prefix: str, obj, key: str, lo=None, hi=None, *, lo_open: bool = False,
                hi_open: bool = False) -> None:
    """``lo <= obj.key <= hi`` (``lo_open`` / ``hi_open``: strict); None bounds are unbounded and a
    None value (an optional field left unset) passes."""
    value = getattr(obj, key)
    if value is None:
        return
    ok = (lo is None or (value > lo if lo_open else value >= lo)) and (hi is None or (value < hi if hi_open else value <= hi))
    if ok:
        return
    if hi is None:
        allowed = f"{'>' if lo_open else '>='} {lo}"
    elif lo is None:
        allowed = f"{'<' if hi_open else '<='} {hi}"
    else:
        allowed = f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    bad_value(prefix, key, value, allowed)


def check_device(prefix: str, obj, key: str = "device") -> None:
    """``obj.key`` names a torch device this project runs on: auto, cpu, cuda or cuda:N."""
    value = getattr(obj, key)
    if value in ("auto", "cpu", "cuda") or (isinstance(value, str) and value.startswith("cuda:")
                                            and value[5:].isdigit()):
        return
    bad_value(prefix, key, value, DEVICE_HELP, "is not a device")


def validate_config(obj, prefix: str = "") -> None:
    """Check every section of the dataclass tree ``obj`` (sub-sections first) with its ``validate``."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            validate_config(value, f"{prefix}.{f.name}" if prefix else f.name)
    check = getattr(obj, "validate", None)
    if callable(check) and prefix:
        check(prefix)
