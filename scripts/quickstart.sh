#!/usr/bin/env bash
# The main job on the bundled sample, end to end, on a CPU (tiny preset):
#   install (if needed) -> draw the sample's face videos -> prepare the splits -> train the
#   emotional retriever -> build the demonstration index -> cache the video features ->
#   train stage rep (with and without video) -> train stage eerg
# Everything lands in runs/sample/ (override with ELMD_RUN=dir).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/${ELMD_VENV:-.venv}/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN="${ELMD_RUN:-runs/sample}"
Q=(--config tiny)
T=("${Q[@]}" --set data.train="$RUN/data/train.jsonl" --set data.valid="$RUN/data/valid.jsonl"
   --set data.test="$RUN/data/test.jsonl" --set index.path="$RUN/index"
   --set vision.feature_cache="$RUN/features" --set train.out="$RUN")

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. face videos of the bundled sample (cached in data/sample/videos/)"
elmd data make-videos --data data/sample/dialogues.jsonl

step "2. canonical splits -> $RUN/data"
elmd data prepare --format jsonl --input data/sample/dialogues.jsonl --out "$RUN/data" "${Q[@]}" 2>/dev/null

step "3. emotional retriever (ERT + SSC) -> $RUN/retriever, demonstration index -> $RUN/index"
elmd retriever train --out "$RUN/retriever" "${T[@]}" 2>/dev/null
elmd index build --retriever "$RUN/retriever" --out "$RUN/index" "${T[@]}" 2>/dev/null

step "4. frozen ViT + Q-Former features of every video -> $RUN/features"
elmd features extract --data data/sample/dialogues.jsonl "${T[@]}" 2>/dev/null

step "5. stage rep (video Linear -> reply emotion) -> $RUN/rep, and rep w/o V -> $RUN/rep_wo_v"
elmd train --stage rep "${T[@]}" 2>/dev/null
elmd train --stage rep --ablation wo_v --out "$RUN/rep_wo_v" "${T[@]}" 2>/dev/null

step "6. stage eerg (p-tuning v2 prefix + Linear from rep) -> $RUN/eerg"
elmd train --stage eerg "${T[@]}" 2>/dev/null

step "REP valid emotion accuracy (argmax over the label words' likelihood)"
"${ELMD_VENV:-.venv}/bin/python" - "$RUN" <<'PY'
import json, sys
run = sys.argv[1]
for name, what in (("rep", "with video"), ("rep_wo_v", "w/o V")):
    meta = json.load(open(f"{run}/{name}/meta.json"))
    print(f"  {what:>10}: {meta['final']['valid_accuracy']:.3f}")
print(f"  label prior: {json.load(open(f'{run}/rep/meta.json'))['label_prior_accuracy']:.3f}")
PY

step "done: what was produced"
find "$RUN" -maxdepth 2 -type f -not -path '*/features/*' -not -path '*/checkpoints/*' | sort
