"""The run configuration: one dataclass per concern, loaded from YAML with ``key=value`` overrides.

    cfg = load_config("tiny", ["train.lr=1e-4", "vision.num_frames=4"])
    print(format_config(cfg))              # printed at the start of every command
    save_config(cfg, out / "config.yaml")  # saved beside every output

A preset name ("tiny", "chatglm2-6b") means ``configs/<name>.yaml`` in the repository; any other
value is a path to a YAML file. The YAML has one section per concern (``data``, ``retrieval``,
``index``, ``llm``, ``vision``, ``vision_pretrain``, ``prompt``, ``train``, ``generate``); fields left out keep their
defaults. Each field's docstring documents it (``elmd config show`` prints them as comments).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import inspect
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from elmd.data.config import DataConfig
from elmd.errors import ConfigError
from elmd.evaluation.config import GenerateConfig
from elmd.heads.avatar.config import AvatarConfig
from elmd.io import atomic_write_text
from elmd.models.config import LLMConfig, PromptConfig, VisionConfig, VisionPretrainConfig
from elmd.training.config import TrainConfig
from retrieval.config import IndexConfig, RetrieverConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class ELMDConfig:
    data: DataConfig = field(default_factory=DataConfig)
    """Dialogue data, label set and splits."""
    retrieval: RetrieverConfig = field(default_factory=RetrieverConfig)
    """Emotional retriever (encoder, ERT, SSC)."""
    index: IndexConfig = field(default_factory=IndexConfig)
    """FAISS demonstration index."""
    llm: LLMConfig = field(default_factory=LLMConfig)
    """LLM backbone (ChatGLM2)."""
    vision: VisionConfig = field(default_factory=VisionConfig)
    """Frozen ViT + Q-Former and frame sampling."""
    vision_pretrain: VisionPretrainConfig = field(default_factory=VisionPretrainConfig)
    """Pre-training of the tiny ViT + Q-Former (CPU stand-in for BLIP-2's)."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """Six-part prompt and truncation."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Stage rep / eerg training."""
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    """Decoding."""
    avatar: AvatarConfig = field(default_factory=AvatarConfig)
    """Avatar head (EmpathyEar-style): speech and talking-face backends, video size, default profile."""


def available_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise ConfigError(f"{p}: config file not found — check the path or use a preset: {available_presets()}")
        return p
    preset = CONFIG_DIR / f"{name_or_path}.yaml"
    if not preset.exists():
        raise ConfigError(f"unknown preset '{name_or_path}' — choose one of {available_presets()} or give a YAML path")
    return preset


def load_config(name_or_path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ELMDConfig:
    """Defaults <- YAML file (preset name or path) <- ``section.field=value`` overrides."""
    cfg = ELMDConfig()
    if name_or_path:
        path = resolve_config_path(name_or_path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]}) — fix the file") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections — see configs/tiny.yaml")
        _apply_dict(cfg, raw, str(path))
    _apply_overrides(cfg, overrides, "override")
    return cfg


def with_overrides(cfg: ELMDConfig, overrides, where: str = "override") -> ELMDConfig:
    """A copy of ``cfg`` with ``section.field=value`` overrides applied (``cfg`` is not changed)."""
    out = copy.deepcopy(cfg)
    _apply_overrides(out, overrides, where)
    return out


def _apply_overrides(cfg, overrides, where: str) -> None:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{where} '{item}' is not key=value — write e.g. train.lr=1e-4")
        _set_path(cfg, key.strip(), yaml.safe_load(value) if value.strip() else "", f"{where} '{item}'")


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


def config_from_dict(raw: dict) -> ELMDConfig:
    """Rebuild a config saved by :func:`save_config` (unknown keys are an error)."""
    cfg = ELMDConfig()
    _apply_dict(cfg, raw, "saved config")
    return cfg


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
