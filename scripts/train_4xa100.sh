#!/usr/bin/env bash
# The paper's training setup (Sec. 4.3): ChatGLM2-6B frozen in bf16 on 4 x A100 40G, global batch 16,
# stage rep (lr 2e-5) then stage eerg (p-tuning v2, pre_seq_len 128, lr 2e-2), ~15 h in all.
#
#   bash scripts/train_4xa100.sh [extra --set key=value ...]
#
# Before: `elmd data prepare` (M3ED) into runs/m3ed/data, `elmd retriever train`, `elmd index build`
# and `elmd features extract` for train and valid (see README). Paths come from configs/chatglm2-6b.yaml.
# A killed run continues with RESUME=1 (it loses at most the steps since its last checkpoint).
# First, `elmd plan` checks on the meta device (no weights) that both stages fit NGPU x GPU_MEM and
# stops the script when not, naming the setting to change (PLAN=0 skips it).
# Same command with `accelerate launch --multi_gpu --num_processes 4 -m elmd.cli.main train ...`.
set -euo pipefail
cd "$(dirname "$0")/.."
NGPU="${NGPU:-4}"
CONFIG="${CONFIG:-chatglm2-6b}"
RESUME_FLAG=()
[[ "${RESUME:-0}" == "1" ]] && RESUME_FLAG=(--resume)
SETS=(--set llm.dtype=bfloat16 --set train.batch_size=16)
for extra in "$@"; do SETS+=(--set "$extra"); done
launch() { torchrun --standalone --nproc_per_node "$NGPU" -m elmd.cli.main train "$@"; }

if [[ "${PLAN:-1}" == "1" ]]; then
  DATA_FLAG=(); [[ -f "${TRAIN_DATA:-runs/m3ed/data/train.jsonl}" ]] && DATA_FLAG=(--data "${TRAIN_DATA:-runs/m3ed/data/train.jsonl}")
  python -m elmd.cli.main plan --config "$CONFIG" --gpus "$NGPU" --gpu-mem "${GPU_MEM:-40GiB}" "${DATA_FLAG[@]}" "${SETS[@]}"
fi

launch --stage rep --config "$CONFIG" "${SETS[@]}" "${RESUME_FLAG[@]}"
launch --stage eerg --config "$CONFIG" "${SETS[@]}" "${RESUME_FLAG[@]}"
