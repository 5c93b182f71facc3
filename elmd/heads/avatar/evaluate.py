"""``elmd avatar evaluate``: render a fixed set of replies and measure them (issue 15 item 5).

The set is :data:`EVAL_TEXTS` x the seven emotions x :data:`EVAL_PROFILES`. Every number is
measured from the written MP4 (decoded back, not taken from what the renderer meant to draw):

* prosody per emotion: F0 mean / range and speaking rate of the MP4's audio (:func:`.metrics.prosody`);
* lip sync: correlation of the mouth opening measured in the frames with the audio energy per
  frame, and the A/V offset of the best cross-correlation (:func:`.metrics.lipsync`, one-frame
  resolution); the sample-exact delay of the MP4's audio against the speech the frames were drawn
  from (:func:`.metrics.audio_delay_ms`);
* identity: SSIM of the frames to the reference face, and to the other profile's reference face
  (the contrast: own > other means the identity is kept);
* closed-loop emotion (:func:`closed_loop_emotion`, when a stage-``rep`` run is given): the run's
  visual path (frozen encoder + its trained Linear) predicts the reply emotion with the avatar
  video as the utterance's video; accuracy over the seven emotions (chance 1/7).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from elmd.errors import ElmdError
from elmd.heads.avatar.config import AvatarConfig
from elmd.heads.avatar.face import CartoonFace, Reference
from elmd.heads.avatar.meta import Profile
from elmd.heads.avatar.metrics import audio_delay_ms, frame_energy, lipsync, mouth_opening, prosody, ssim
from elmd.heads.avatar.mux import probe, read_audio, read_video
from elmd.heads.avatar.render import EMOTIONS, build_face, build_speech, render_avatar
from elmd.heads.avatar.speech import read_wav, syllables
from elmd.io import atomic_dir, atomic_write_json, atomic_write_text

EVAL_TEXTS = ("今天终于考完试了，我们出去走走吧。", "你说的这件事我还是第一次听说。", "明天早上八点在学校门口见面。")
EVAL_PROFILES = (Profile("female", "young"), Profile("male", "middle-aged"))
AUDIO_SR = 16000


@dataclass
class RenderScore:
    """Measurements of one rendered reply."""

    folder: str
    emotion: str
    gender: str
    age: str
    duration: float
    f0_mean_hz: float
    f0_range_st: float
    rate_syl_s: float
    lip_corr: float
    offset_ms: float
    audio_delay_ms: float
    ssim_own: float
    ssim_other: float


def score_render(folder: Path, text: str, emotion: str, profile: Profile, key: str, other_ref: np.ndarray,
                 face: CartoonFace) -> RenderScore:
    """Measure one render folder from its MP4 (module docstring)."""
    video = folder / "avatar.mp4"
    info = probe(video)
    if not info.audio_codec:
        raise ElmdError(f"{video}: has no audio stream")
    frames, audio = read_video(video), read_audio(video, AUDIO_SR)
    pro = prosody(audio, AUDIO_SR, syllables(text))
    sync = lipsync(mouth_opening(frames, face.mouth_box(Reference(key), profile)),
                   frame_energy(audio, AUDIO_SR, info.fps, len(frames)), info.fps)
    spoken, sr = read_wav(folder / "speech.wav")
    delay = audio_delay_ms(spoken, read_audio(video, sr), sr)
    ref = np.asarray(Image.open(folder / "reference.png").convert("RGB"))
    step = max(1, len(frames) // 10)
    own = float(np.mean([ssim(f, ref) for f in frames[::step]]))
    other = float(np.mean([ssim(f, other_ref) for f in frames[::step]]))
    return RenderScore(str(folder), emotion, profile.gender, profile.age, info.duration, pro.f0_mean_hz,
                       pro.f0_range_st, pro.rate_syl_s, sync.correlation, sync.offset_ms, delay, own, other)


@dataclass
class AvatarEvaluation:
    rows: list[RenderScore]
    per_emotion: dict[str, dict[str, float]]
    """emotion -> mean of every measurement over its renders."""
    closed_loop: dict | None = None
    """accuracy, per-emotion accuracy and predictions of the rep run (None without a run)."""
    extras: dict = field(default_factory=dict)


def evaluate_avatars(out: str | Path, cfg: AvatarConfig | None = None, rep_run: str | Path | None = None,
                     overwrite: bool = False, texts=EVAL_TEXTS) -> AvatarEvaluation:
    """Render the fixed set into ``out/renders``, measure, write ``report.json`` / ``report.md``."""
    cfg = cfg or AvatarConfig()
    out = Path(out)
    if out.exists() and not overwrite:
        raise ElmdError(f"{out}: already exists — pass --overwrite to replace it, or choose another --out")
    if rep_run is not None and not (Path(rep_run) / "trainable.safetensors").is_file():
        raise ElmdError(f"{rep_run}: not a finished stage-rep run (no trainable.safetensors) — run "
                        "`bash scripts/quickstart.sh` (it writes runs/sample/rep) or pass --rep-run")
    speech, face = build_speech(cfg), build_face(cfg)
    if not isinstance(face, CartoonFace):
        raise ElmdError("avatar evaluate measures the mouth in the cartoon renderer's frames — use avatar.face=cartoon")
    keys = [f"{p.gender}/{p.age}" for p in EVAL_PROFILES]
    refs = [face.still(Reference(k), p) for k, p in zip(keys, EVAL_PROFILES)]
    with atomic_dir(out) as tmp:
        rows, videos = [], []
        for pi, (profile, key) in enumerate(zip(EVAL_PROFILES, keys)):
            for ti, text in enumerate(texts):
                for emotion in EMOTIONS:
                    folder = tmp / "renders" / f"{emotion}_{pi}_{ti}"
                    render_avatar(text, emotion, folder, cfg, profile, key, speech=speech, face=face)
                    rows.append(score_render(folder, text, emotion, profile, key, refs[1 - pi], face))
                    videos.append((folder / "avatar.mp4", emotion))
        result = AvatarEvaluation(rows, summarize(rows))
        if rep_run is not None:
            result.closed_loop = closed_loop_emotion(rep_run, videos, tmp / "closed_loop")
        report = {"per_emotion": result.per_emotion, "closed_loop": result.closed_loop,
                  "rows": [asdict(r) for r in rows], "config": asdict(cfg)}
        atomic_write_json(tmp / "report.json", report)
        atomic_write_text(tmp / "report.md", format_table(result) + "\n")
    for r in rows:
        r.folder = r.folder.replace(str(tmp), str(out))
    return result


def summarize(rows: list[RenderScore]) -> dict[str, dict[str, float]]:
    """Mean of each measurement per emotion, plus 'all'."""
    groups: dict[str, list[RenderScore]] = defaultdict(list)
    for r in rows:
        groups[r.emotion].append(r)
    groups["all"] = list(rows)
    keys = ("f0_mean_hz", "f0_range_st", "rate_syl_s", "lip_corr", "offset_ms", "audio_delay_ms", "ssim_own",
            "ssim_other", "duration")
    return {e: {k: float(np.mean([getattr(r, k) for r in g])) for k in keys} for e, g in groups.items()}


def format_table(ev: AvatarEvaluation) -> str:
    """Markdown table: one row per emotion (+ all), closed-loop accuracy beside when measured."""
    cl = ev.closed_loop or {}
    head = ("| emotion | F0 mean (Hz) | F0 range (st) | rate (syl/s) | lip corr | A/V offset (ms) | audio delay (ms) | "
            "SSIM own / other | closed-loop acc |")
    lines = [head, "|" + " --- |" * 9]
    for e, m in ev.per_emotion.items():
        acc = cl.get("per_emotion", {}).get(e, cl.get("accuracy") if e == "all" else None)
        lines.append(f"| {e} | {m['f0_mean_hz']:.1f} | {m['f0_range_st']:.2f} | {m['rate_syl_s']:.2f} | {m['lip_corr']:.3f} | "
                     f"{m['offset_ms']:.0f} | {m['audio_delay_ms']:.2f} | {m['ssim_own']:.3f} / {m['ssim_other']:.3f} | "
                     f"{'-' if acc is None else f'{acc:.3f}'} |")
    return "\n".join(lines)


def closed_loop_emotion(rep_run: str | Path, videos: list[tuple[Path, str]], work: Path,
                        utterance: str = "嗯。", batch_size: int = 8) -> dict:
    """Accuracy of stage ``rep``'s visual path on ``videos`` ((mp4, emotion) pairs): each becomes
    the video of utterance ``utterance`` and the run scores the reply's emotion as its validation
    does (argmax over the label words' log-likelihood). Video features are cached under ``work``
    (the run's own cache is not touched)."""
    import torch

    from elmd.inference import load
    from elmd.inference.reply import Request
    from elmd.models.prompt import label_word_ids

    pipe = load(rep_run, "cpu", overrides=["vision.feature_cache="])  # encode on the fly: the run's cache stays as it is
    if not pipe.cfg.vision.use_video:
        raise ElmdError(f"{rep_run}: trained without video (vision.use_video=false) — pass the run with video")
    requests = [Request(utterance, video=str(Path(v).resolve()), sample_id=f"avatar{i}", dialogue_id=f"avatar{i}")
                for i, (v, _) in enumerate(videos)]
    ids, predicted = label_word_ids(pipe.tokenizer, pipe.labels), []
    with torch.no_grad():
        for i in range(0, len(requests), batch_size):
            chunk = requests[i:i + batch_size]
            encoded = [pipe.encode(r, d) for r, d in zip(chunk, pipe.demonstrations(chunk))]
            scores = pipe.model.label_logprobs(**pipe.batch(encoded, chunk), label_ids=ids)
            predicted += [pipe.labels.ids[k] for k in scores.argmax(-1).tolist()]
    truth = [e for _, e in videos]
    per_emotion = {e: float(np.mean([p == t for p, t in zip(predicted, truth) if t == e])) for e in dict.fromkeys(truth)}
    return {"run": str(rep_run), "videos": len(videos), "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth)])),
            "chance": 1 / len(pipe.labels.ids), "per_emotion": per_emotion, "predicted": predicted}
