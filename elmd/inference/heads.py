"""The contract of a downstream head (sticker, avatar): it reads answered turns and adds to them.

A head is any object with a ``name`` and ``apply(replies, requests, media_dir)`` that fills
``reply.extras[head.name]`` with a JSON-serialisable dict (paths relative to ``media_dir`` or
absolute). Heads never change ``response`` / ``emotion``; they are registered by name in
:data:`HEADS` so `elmd generate --heads`, `elmd chat` and `elmd serve` can build them from a config.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from elmd.inference.reply import Reply, Request

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig


class Head(Protocol):
    name: str

    def apply(self, replies: Sequence[Reply], requests: Sequence[Request], media_dir: Path) -> None:
        """Fill ``reply.extras[self.name]`` for each reply (media files go under ``media_dir``)."""


HEADS: dict[str, str] = {
    "sticker": "elmd.heads.sticker.head:build_head",
    "avatar": "elmd.heads.avatar.head:build_head",
}
"""Head name -> ``"module:factory"``; ``factory(pipeline, cfg) -> Head`` (imported lazily)."""


def register_head(name: str, target: str) -> None:
    """Make ``name`` buildable by :func:`build_head` (``target`` = ``"package.module:factory"``)."""
    HEADS[name] = target


def build_head(name: str, pipeline, cfg: ELMDConfig) -> Head:
    """The head called ``name`` for ``pipeline`` (a :class:`~elmd.inference.pipeline.Pipeline`)."""
    import importlib

    from elmd.errors import ConfigError

    if name not in HEADS:
        raise ConfigError(f"unknown head '{name}' — choose from {sorted(HEADS) or 'none registered'}")
    module, _, factory = HEADS[name].partition(":")
    make: Callable = getattr(importlib.import_module(module), factory)
    return make(pipeline, cfg)
