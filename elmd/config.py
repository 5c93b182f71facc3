"""The run configuration: one dataclass per concern, loaded from YAML with ``key=value`` overrides.

    cfg = load_config("tiny", ["train.lr=1e-4", "vision.num_frames=4"])
    print(format_config(cfg))              # printed at the start of every command
    save_config(cfg, out / "config.yaml")  # saved beside every output

A preset name ("tiny", "chatglm2-6b") means ``configs/<name>.yaml`` in the repository; any other
value is a path to a YAML file. The YAML has one section per concern (``data``, ``retrieval``,
``index``, ``llm``, ``vision``, ``vision_pretrain``, ``prompt``, ``prefix``, ``train``, ``generate``); fields left out keep their
defaults. Each field's docstring documents it (``elmd config show`` prints them as comments).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# the generic YAML machinery is re-exported: elmd.config.format_config / save_config / config_to_dict
from elmd.configio import (_apply_dict, _set_path, config_to_dict, field_docs, format_config,  # noqa: F401
                           save_config, validate_config)
from elmd.data.config import DataConfig
from elmd.errors import ConfigError
from elmd.evaluation.config import GenerateConfig
from elmd.heads.avatar.config import AvatarConfig
from elmd.heads.sticker.config import StickerConfig
from elmd.models.config import LLMConfig, PrefixConfig, PromptConfig, VisionConfig, VisionPretrainConfig
from elmd.training.config import TrainConfig
from elmd.training.lm_config import LMPretrainConfig
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
    lm_pretrain: LMPretrainConfig = field(default_factory=LMPretrainConfig)
    """Pre-training of the tiny GLM (`elmd lm pretrain`; CPU stand-in for ChatGLM2-6B's)."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """Six-part prompt and truncation."""
    prefix: PrefixConfig = field(default_factory=PrefixConfig)
    """p-tuning v2 prefix of stage eerg."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Stage rep / eerg training."""
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    """Decoding."""
    sticker: StickerConfig = field(default_factory=StickerConfig)
    """Sticker head (PEGS-style): library, [IMG] tokens, projections, SD backends."""
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
    """Defaults <- YAML file (preset name or path) <- ``section.field=value`` overrides, then every
    section validated (:func:`elmd.configio.validate_config`: one line naming key, value, range).

    In a file, a path value (:data:`elmd.paths.PATH_KEYS`) starting with ``./`` or ``../`` is
    relative to the file's folder (what `elmd data prepare` and run folders write); any other
    relative path, and every override, is relative to the working directory (the presets'
    ``runs/sample/...``)."""
    cfg = ELMDConfig()
    if name_or_path:
        path = resolve_config_path(name_or_path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]}) — fix the file") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections — see configs/tiny.yaml")
        _apply_dict(cfg, _migrate(raw), str(path))
        _resolve_file_paths(cfg, path.parent)
    _apply_overrides(cfg, overrides, "override")
    validate_config(cfg)
    return cfg


def _resolve_file_paths(cfg: ELMDConfig, folder: Path) -> None:
    """``./`` and ``../`` path values of a config file -> paths relative to ``folder`` (in place)."""
    values = [v for sec in vars(cfg).values() for v in vars(sec).values() if isinstance(v, str)]
    if not any(v == "." or v.startswith(("./", "../")) for v in values):
        return  # nothing to resolve
    from elmd.paths import PATH_KEYS, resolve_path

    for dotted in PATH_KEYS:
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        if value:
            setattr(getattr(cfg, section), key, resolve_path(value, folder))


def with_overrides(cfg: ELMDConfig, overrides, where: str = "override") -> ELMDConfig:
    """A copy of ``cfg`` with ``section.field=value`` overrides applied (``cfg`` is not changed)."""
    out = copy.deepcopy(cfg)
    _apply_overrides(out, overrides, where)
    validate_config(out)
    return out


def _apply_overrides(cfg, overrides, where: str) -> None:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{where} '{item}' is not key=value — write e.g. train.lr=1e-4")
        key = LEGACY_KEYS.get(key.strip(), key.strip())
        _set_path(cfg, key, yaml.safe_load(value) if value.strip() else "", f"{where} '{item}'")


LEGACY_KEYS = {"train.pre_seq_len": "prefix.pre_seq_len", "train.prefix_projection": "prefix.projection",
               "train.prefix_hidden_size": "prefix.hidden_size", "train.prefix_dropout": "prefix.dropout"}
"""Keys of earlier versions (and run folders saved by them) -> their current name."""


def _migrate(raw: dict) -> dict:
    """A config mapping with :data:`LEGACY_KEYS` moved to their current sections (a new dict)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    for old, new in LEGACY_KEYS.items():
        (osec, okey), (nsec, nkey) = old.split("."), new.split(".")
        if isinstance(out.get(osec), dict) and okey in out[osec]:
            out.setdefault(nsec, {})[nkey] = out[osec].pop(okey)
    return out


def config_from_dict(raw: dict) -> ELMDConfig:
    """Rebuild a config saved by :func:`save_config` (unknown keys are an error)."""
    cfg = ELMDConfig()
    _apply_dict(cfg, _migrate(raw), "saved config")
    validate_config(cfg)
    return cfg


