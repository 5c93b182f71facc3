"""Stand-in for SadTalker's inference.py (same command line) used by tests/test_avatar_subprocess.py.

Checks what SadTalker would need (the audio, the portrait, a checkpoint folder with files, an
offline hub) and writes ``<result_dir>/<timestamp>.mp4``: the portrait at 25 fps, silent, as long
as the audio, brightened with the audio's loudness so the frames differ. ``--fail`` exits 1.
"""

import argparse
import os
import sys
import time
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

p = argparse.ArgumentParser()
p.add_argument("--driven_audio", required=True)
p.add_argument("--source_image", required=True)
p.add_argument("--checkpoint_dir", required=True)
p.add_argument("--result_dir", required=True)
p.add_argument("--cpu", action="store_true")
p.add_argument("--fail", action="store_true")
a = p.parse_args()
if os.environ.get("HF_HUB_OFFLINE") != "1":
    sys.exit("hub not offline")
if a.fail or os.environ.get("STANDIN_FAIL"):
    print("RuntimeError: face not detected in the source image", file=sys.stderr)
    sys.exit(1)
if not any(Path(a.checkpoint_dir).iterdir()):
    sys.exit("no checkpoints")
with wave.open(a.driven_audio) as w:
    sr, x = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768.0
img = np.asarray(Image.open(a.source_image).convert("RGB").resize((128, 128)))
n = int(np.ceil(len(x) * 25 / sr))
out = Path(a.result_dir) / time.strftime("%Y_%m_%d_%H.%M.%S.mp4")
writer = imageio_ffmpeg.write_frames(str(out), (128, 128), fps=25, ffmpeg_log_level="error")
writer.send(None)
for k in range(n):
    seg = x[k * sr // 25:(k + 1) * sr // 25]
    gain = 1.0 + 0.5 * float(np.sqrt(np.mean(seg ** 2)) if len(seg) else 0.0)
    writer.send(np.clip(img * gain, 0, 255).astype(np.uint8))
writer.close()
