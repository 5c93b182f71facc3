"""Real talking-face models as subprocesses of a local checkout (issue 15 item 3).

SadTalker, DreamTalk and EAT pin their own environments (old torch / TensorFlow, CUDA for EAT),
so elmd never imports them: it runs the checkout's inference script with ``avatar.face_python``
in ``avatar.face_repo``, with the hub forced offline in its environment, and puts our speech under
the video it writes. Command lines (``{...}`` filled per reply)::

    sadtalker: {python} inference.py --driven_audio {wav} --source_image {image}
               --checkpoint_dir {checkpoints} --result_dir {result_dir} --cpu
               -> the newest *.mp4 under {result_dir}
    dreamtalk: {python} inference_for_demo_video.py --wav_path {wav} --image_path {image}
               --style_clip_path data/style_clip/3DMM/M030_front_{style}_level3_001.mat
               --pose_path data/pose/RichardShelby_front_neutral_level1_001.mat
               --cfg_scale 1.0 --max_gen_len 60 --output_name {name} --device cpu
               -> output_video/{name}.mp4 in the checkout

(EAT needs CUDA and TensorFlow 1.15; add its line to :data:`COMMANDS` the same way.) Before the run,
the checkout, its script and a checkpoint folder with checkpoint files must exist; a failed run
stops with the last line the tool printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from elmd.errors import DataError, ElmdError
from elmd.heads.avatar.face import FaceResult, Reference
from elmd.heads.avatar.meta import Profile
from elmd.heads.avatar.mux import probe, remux_audio
from elmd.heads.avatar.neural import OFFLINE_ENV, check_checkpoints


@dataclass(frozen=True)
class Command:
    script: str
    args: tuple[str, ...]
    output: str
    """Where the video appears: a glob under the result folder ('{result_dir}/**/*.mp4') or a path
    relative to the checkout."""


COMMANDS = {
    "sadtalker": Command("inference.py", ("--driven_audio", "{wav}", "--source_image", "{image}", "--checkpoint_dir",
                                          "{checkpoints}", "--result_dir", "{result_dir}", "--cpu"), "{result_dir}/**/*.mp4"),
    "dreamtalk": Command("inference_for_demo_video.py",
                         ("--wav_path", "{wav}", "--image_path", "{image}", "--style_clip_path",
                          "data/style_clip/3DMM/M030_front_{style}_level3_001.mat", "--pose_path",
                          "data/pose/RichardShelby_front_neutral_level1_001.mat", "--cfg_scale", "1.0",
                          "--max_gen_len", "60", "--output_name", "{name}", "--device", "cpu"), "output_video/{name}.mp4"),
}
DREAMTALK_STYLES = {"happy": "happy", "surprise": "surprised", "sad": "sad", "disgust": "disgusted", "anger": "angry",
                    "fear": "fear", "neutral": "neutral"}


class SubprocessFace:
    """A talking-face checkout run per reply (module docstring)."""

    def __init__(self, kind: str, repo: str | Path, checkpoints: str | Path = "", python: str = "python",
                 timeout_s: int = 1800):
        if kind not in COMMANDS:
            raise ElmdError(f"avatar.face={kind!r} has no command line — use one of {sorted(COMMANDS)}")
        if not str(repo):
            raise ElmdError(f"avatar.face_repo is empty — point it at a local {kind} checkout")
        self.kind, self.name, self.command = kind, kind, COMMANDS[kind]
        self.repo = Path(repo).resolve()
        if not (self.repo / self.command.script).is_file():
            raise DataError(self.repo, f"no {self.command.script} here — not a {kind} checkout", "fix avatar.face_repo")
        self.checkpoints = check_checkpoints(Path(checkpoints) if str(checkpoints) else self.repo / "checkpoints",
                                             f"{kind} checkpoint", "face_checkpoints").resolve()
        self.python, self.timeout_s = python, timeout_s

    @classmethod
    def from_config(cls, cfg) -> "SubprocessFace":
        return cls(cfg.face, cfg.face_repo, cfg.face_checkpoints, cfg.face_python, cfg.face_timeout_s)

    def render(self, wav: Path, emotion: str, profile: Profile, reference: Reference, out: Path) -> FaceResult:
        if reference.image is None or not Path(reference.image).is_file():
            raise DataError(reference.image or "avatar.face_bank", "reference face not found",
                            "give a portrait (avatar.face_bank) for the talking-face model")
        result_dir = Path(out).parent / f".{self.kind}_out"
        result_dir.mkdir(parents=True, exist_ok=True)
        fill = {"wav": str(Path(wav).resolve()), "image": str(Path(reference.image).resolve()),
                "checkpoints": str(self.checkpoints), "result_dir": str(result_dir.resolve()),
                "name": f"elmd_{uuid.uuid4().hex[:8]}", "style": DREAMTALK_STYLES.get(emotion, "neutral"),
                "emotion": emotion, "python": self.python}
        cmd = [self.python, self.command.script, *(a.format(**fill) for a in self.command.args)]
        started = time.time()
        try:
            done = subprocess.run(cmd, cwd=self.repo, env={**os.environ, **OFFLINE_ENV}, capture_output=True, text=True,
                                  timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise ElmdError(f"avatar: {self.kind} ran past avatar.face_timeout_s={self.timeout_s} s — raise it") from None
        except OSError as e:
            raise ElmdError(f"avatar: could not start {self.python} ({e.strerror}) — fix avatar.face_python") from None
        if done.returncode != 0:
            last = ((done.stderr or done.stdout).strip().splitlines() or ["no output"])[-1]
            raise ElmdError(f"avatar: {self.kind} failed (exit {done.returncode}): {last[:300]}")
        try:
            remux_audio(self._output(fill, started), Path(wav), Path(out))
        finally:
            shutil.rmtree(result_dir, ignore_errors=True)
        info = probe(Path(out))
        return FaceResult(Path(out), int(round(info.duration * info.fps)), int(round(info.fps)), [], self.kind,
                          {"repo": str(self.repo), "checkpoints": str(self.checkpoints), "command": cmd[1:2]})

    def _output(self, fill: dict, started: float) -> Path:
        pattern = self.command.output.format(**fill)
        if pattern.startswith(fill["result_dir"]):
            root = Path(fill["result_dir"])
            found = sorted(root.glob(pattern[len(fill["result_dir"]) + 1:]), key=lambda p: p.stat().st_mtime)
            found = [p for p in found if p.stat().st_mtime >= started - 1]
        else:
            p = self.repo / pattern
            found = [p] if p.is_file() else []
        if not found:
            raise ElmdError(f"avatar: {self.kind} finished but wrote no video matching {pattern}")
        return found[-1]
