"""The registry of training stages (paper Sec. 3.4-3.5): one place that says what each stage is.

A :class:`StageSpec` names the stage, its prompt instruction and target, the parts of
:class:`~elmd.models.elmd_model.ELMDModel` it trains, the stage it starts from and the module that
trains it. Everything that used to switch on stage names reads it: the prompt
(:mod:`elmd.models.prompt`), the training session and CLI (:mod:`elmd.training`), and loading a
run folder back (:func:`elmd.inference.load`), which reads the stage from the folder's
``meta.json``. Built in:

==========  ================================  ===========================  ==========
stage       target                            trains                       starts from
==========  ================================  ===========================  ==========
``rep``     the reply's emotion word          video Linear                 --
``eerg``    emotion word + newline + reply    p-tuning v2 prefix + Linear  ``rep``
==========  ================================  ===========================  ==========

With ``train.target=meta`` a stage that generates a reply (eerg) learns the meta-response block
instead (:func:`run_target`; :mod:`elmd.data.meta_response`).

A head adds its own stage (e.g. ``sticker``) with :func:`register_stage` in its ``stage`` module,
listed in :data:`PLUGINS` so that :func:`get_stage` imports it on first use. This module imports
nothing of the project, so any layer may read it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from elmd.errors import ConfigError

TARGETS = ("emotion", "emotion_response", "meta")
"""What the prompt's answer part holds in training: the emotion word only, emotion word +
newline + response + eos, or the meta-response block (:mod:`elmd.data.meta_response`; a stage
that generates a response gets it with ``train.target=meta``, see :func:`run_target`)."""


@dataclass(frozen=True)
class StageSpec:
    """One training stage."""

    name: str
    """Stage name (`elmd train --stage NAME`, ``meta.json``'s ``stage``)."""
    target: str
    """Prompt target, one of :data:`TARGETS`."""
    trainable: tuple[str, ...]
    """Top-level parts of ELMDModel that train (``projector``, ``prefix``, a head's modules)."""
    trainer: str
    """``module:function`` with ``function(cfg, out, resume, show_progress=...) -> meta``."""
    starts_from: str | None = None
    """The stage whose output initialises this one (``train.init_from_rep`` for eerg)."""
    lr_key: str = "lr"
    """Field of ``train`` holding this stage's learning rate."""
    epochs_key: str = "epochs"
    """Field of ``train`` holding this stage's number of epochs."""

    @property
    def uses_prefix(self) -> bool:
        return "prefix" in self.trainable

    @property
    def generates_response(self) -> bool:
        return self.target in ("emotion_response", "meta")


_STAGES: dict[str, StageSpec] = {}

PLUGINS: dict[str, str] = {"sticker": "elmd.heads.sticker.stage"}
"""Stages defined outside this module: name -> the module that registers it when imported."""


def register_stage(spec: StageSpec) -> StageSpec:
    """Add ``spec`` to the registry (a name is registered once; the same spec again is a no-op)."""
    if spec.target not in TARGETS:
        raise ValueError(f"stage {spec.name}: target '{spec.target}' is not one of {TARGETS}")
    old = _STAGES.get(spec.name)
    if old is not None and old != spec:
        raise ValueError(f"stage '{spec.name}' is already registered with other settings")
    _STAGES[spec.name] = spec
    return spec


register_stage(StageSpec("rep", "emotion", ("projector",), "elmd.training.rep:train_rep"))
register_stage(StageSpec("eerg", "emotion_response", ("projector", "prefix"), "elmd.training.eerg:train_eerg",
                         starts_from="rep", lr_key="eerg_lr", epochs_key="eerg_epochs"))


def run_target(stage: str, train_target: str = "reply") -> str:
    """The prompt target of ``stage`` in a run with ``train.target``: 'meta' replaces the target of
    a stage that generates a response (eerg's emotion + reply) by the meta-response block; a stage
    that does not (rep: the emotion word) keeps its own."""
    spec = get_stage(stage)
    return "meta" if train_target == "meta" and spec.generates_response else spec.target


def stage_names() -> tuple[str, ...]:
    """Registered stages (the built-in ones first), plugins not yet imported included."""
    return tuple(_STAGES) + tuple(n for n in PLUGINS if n not in _STAGES)


def get_stage(name: str) -> StageSpec:
    """The spec of ``name``; a plugin's module is imported on first use. Unknown -> ConfigError."""
    if name not in _STAGES and name in PLUGINS:
        try:
            importlib.import_module(PLUGINS[name])
        except ModuleNotFoundError as e:
            if not (e.name or "").startswith(PLUGINS[name].rsplit(".", 1)[0]):
                raise
    if name not in _STAGES:
        raise ConfigError(f"unknown stage '{name}' — choose one of {', '.join(n for n in _STAGES)}")
    return _STAGES[name]


def trainer_of(spec: StageSpec):
    """The training function of a stage (imported lazily)."""
    module, _, fn = spec.trainer.partition(":")
    return getattr(importlib.import_module(module), fn)
