"""The baselines of the paper's Table 2, run in the same harness as ELMD (`elmd generate --baseline`).

* ``text-only`` (the DialoGPT-style row): the same model machinery with ``vision.use_video=false``
  and ``prompt.use_demonstration=false`` — the prompt has no video positions and no part R. It needs
  a checkpoint trained that way: ``elmd train --stage eerg --ablation wo_v --set
  prompt.use_demonstration=false`` (stage rep has nothing to train without video, so train eerg with
  ``--set train.init_from_rep=false``).
* ``single-frame`` (the VisualGLM-style row): one image instead of the clip and no demonstration.
  Precisely: the utterance video's cached Q-Former features ``[m, Q, q]`` (the same
  :class:`~elmd.training.data.FeatureStore` / ``vision.feature_cache`` as training) are replaced by
  the features of ONE frame index ``j`` replicated to all m positions, ``j`` drawn uniformly from
  ``0..m-1`` by ``random.Random(f"{generate.seed}:{sample_id}")`` (so it is seeded and independent
  of batching). Temporal pooling then equals that frame and spatial pooling repeats its m copies.
  Meant for a checkpoint trained without demonstrations (``--ablation wo_erm``).
* ``retrieval-only`` (a sanity floor, no LLM): the response is the top retrieved demonstration's r'
  (same-dialogue entries excluded, as for ELMD's part R) and ``emotion_pred`` is r''s emotion.
  A sample with no hit gets an empty response and ``emotion_pred`` null (counted, not dropped).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import random
from dataclasses import replace

import torch

from elmd.errors import ConfigError

if TYPE_CHECKING:  # annotations only
    from elmd.config import ELMDConfig

BASELINES = ("none", "text-only", "single-frame", "retrieval-only")
"""``none`` = the checkpoint as trained (ELMD itself)."""

SWITCHES = {
    "none": [],
    "text-only": [("vision.use_video", False), ("prompt.use_demonstration", False)],
    "single-frame": [("prompt.use_demonstration", False)],
    "retrieval-only": [],
}


def check_baseline(name: str) -> str:
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline '{name}' — choose one of {', '.join(BASELINES)}")
    return name


def baseline_overrides(name: str) -> list[str]:
    """The baseline's switches as ``key=value`` overrides."""
    return [f"{k}={'true' if v else 'false'}" for k, v in SWITCHES[check_baseline(name)]]


def baseline_pipeline(checkpoint, name: str, overrides=(), pipeline=None):
    """The :class:`~elmd.inference.pipeline.Pipeline` that answers as baseline ``name``: the run with
    the baseline's switches (+ ``overrides``), the single-frame video transform, and no LLM for
    retrieval-only. ``pipeline``: an already loaded pipeline of ``checkpoint`` to share."""
    from elmd.inference import load

    switches = baseline_overrides(name) + list(overrides)
    if pipeline is None:
        pipe = load(checkpoint, overrides=switches, with_model=name != "retrieval-only")
    else:
        pipe = pipeline.with_overrides(switches)
    if name == "retrieval-only" and pipe.index is None:
        from elmd.resources import open_index

        pipe = replace(pipe, index=open_index(pipe.cfg))
    if name == "single-frame":
        seed = pipe.cfg.generate.seed
        pipe = replace(pipe, video_transform=lambda feats, reqs: single_frame(feats, [r.sample_id for r in reqs], seed))
    return pipe


def mismatch_warnings(trained_cfg: ELMDConfig, cfg: ELMDConfig, name: str) -> list[str]:
    """Where the checkpoint was trained with video / demonstrations that the baseline's prompt lacks."""
    out = []
    if trained_cfg.vision.use_video and not cfg.vision.use_video:
        out.append("the checkpoint was trained with video tokens but the prompts have none — for the text-only row "
                   "train with --ablation wo_v --set prompt.use_demonstration=false")
    if trained_cfg.prompt.use_demonstration and not cfg.prompt.use_demonstration:
        out.append(f"the checkpoint was trained with demonstrations but the {name} prompts have none — "
                   "train it with prompt.use_demonstration=false (--ablation wo_erm)")
    return out


def frame_index(seed: int, sample_id: str, num_frames: int) -> int:
    """The single-frame baseline's frame of ``sample_id`` (seeded, independent of batching)."""
    return random.Random(f"{seed}:{sample_id}").randrange(num_frames)


def single_frame(feats: torch.Tensor, sample_ids: list[str], seed: int) -> torch.Tensor:
    """[B, m, Q, q] -> [B, m, Q, q] where row b holds frame ``frame_index(seed, id_b, m)`` m times."""
    m = feats.shape[1]
    idx = torch.tensor([frame_index(seed, sid, m) for sid in sample_ids], dtype=torch.long)
    picked = feats[torch.arange(feats.shape[0]), idx]  # [B, Q, q]
    return picked.unsqueeze(1).expand_as(feats).clone()


def retrieval_only_replies(pipe, requests) -> list:
    """Replies of the retrieval-only baseline: response = top hit's r', emotion = its label."""
    from elmd.inference.reply import Reply
    from retrieval.demonstration import format_demonstration

    out = []
    for top in pipe.search(requests):
        emotion = top.response_emotion if top is not None and top.response_emotion in pipe.labels else None
        out.append(Reply(emotion, pipe.labels.word(emotion) if emotion else "", top.response if top else "",
                         format_demonstration(top, pipe.labels)))
    return out
