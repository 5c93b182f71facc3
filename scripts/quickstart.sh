#!/usr/bin/env bash
# The main job on the bundled sample, end to end, on a CPU (tiny preset):
#   install (if needed) -> draw the sample's face videos -> prepare the splits -> ...
# Everything lands in runs/sample/ (override with ELMD_RUN=dir).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/${ELMD_VENV:-.venv}/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN="${ELMD_RUN:-runs/sample}"
Q=(--config tiny)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. face videos of the bundled sample (cached in data/sample/videos/)"
elmd data make-videos --data data/sample/dialogues.jsonl

step "2. canonical splits -> $RUN/data"
elmd data prepare --format jsonl --input data/sample/dialogues.jsonl --out "$RUN/data" "${Q[@]}" 2>/dev/null

step "done: what was produced"
find "$RUN" -maxdepth 2 -type f | sort
