#!/usr/bin/env bash
# The avatar head (issue 15) on a finished quickstart run; scripts/quickstart.sh ends with it:
#     RUN=$RUN bash scripts/avatar.sh
#   1. `elmd avatar evaluate`: 3 fixed replies x 7 emotions x 2 profiles spoken (eSpeak NG Mandarin)
#      and animated (cartoon face, 25 fps), every number measured from the decoded MP4s: the prosody
#      / lip-sync / identity table, and the closed-loop emotion accuracy of $RUN/rep's visual path on
#      the avatar videos -> $RUN/avatar_eval (report.md, report.json, renders/)
#   2. `elmd generate --heads avatar` on the first $AVATAR_ROWS test samples: the tiny ELMD's own
#      replies with their speech and talking face -> $RUN/avatar/preds.jsonl, preds.media/avatar/
#   3. only with AVATAR_META=1 (a few more minutes): stage eerg trained with train.target=meta (the
#      meta-response block; fresh Linear, its own tokenizer) -> $RUN/avatar/eerg_meta, then its test
#      replies through the strict parser: parsed / failed counts and the profile the avatar used.
# Needs $RUN/{data,rep,eerg} (and for step 3 the quickstart's $RUN/{index,features,vision}).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/${ELMD_VENV:-.venv}/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN="${RUN:-${ELMD_RUN:-runs/sample}}"
ROWS="${AVATAR_ROWS:-4}"
for d in data rep eerg; do
  if [ ! -d "$RUN/$d" ]; then
    echo "scripts/avatar.sh: $RUN/$d not found — run scripts/quickstart.sh first (or set RUN=<its run folder>)" >&2
    exit 2
  fi
done
AV="$RUN/avatar"
mkdir -p "$AV"
# shellcheck source=scripts/steps.sh
RUN_DIR="$RUN"; RUN="$AV"; source scripts/steps.sh; RUN="$RUN_DIR"  # its logs in $RUN/avatar/logs (steps.sh empties them)

step "A1. avatar evaluation: prosody / lip sync / identity / closed-loop emotion -> $RUN/avatar_eval"
q elmd avatar evaluate --out "$RUN/avatar_eval" --rep-run "$RUN/rep" --overwrite

step "A2. avatars of $ROWS test replies of $RUN/eerg (elmd generate --heads avatar) -> $AV/preds.jsonl"
q elmd generate --checkpoint "$RUN/eerg" --data "$RUN/data/test.jsonl" --out "$AV/preds.jsonl" --heads avatar \
  --set data.max_samples="$ROWS" --overwrite --no-progress | tail -n 1

show_rows() {  # PREDS: one line per row: emotion, who speaks (and from which rule), seconds, video or error
  "${ELMD_VENV:-.venv}/bin/python" - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    a, m = r.get("avatar", {}), r.get("meta")
    parse = "" if m is None else ("  meta ok" if m["ok"] else f"  meta FAILED ({m['error'][:50]})")
    if "error" in a:
        print(f"  {r['sample_id']:>10}  {r['emotion_pred'] or '-':>8}  no avatar: {a['error']}{parse}")
    else:
        print(f"  {r['sample_id']:>10}  {a['emotion']:>8}  {a['gender']}/{a['age']} ({a['profile_source']})"
              f"  {a['duration']:.2f} s  {a['video']}{parse}  {r['response'][:24]!r}")
PY
}
show_rows "$AV/preds.jsonl"

if [ "${AVATAR_META:-0}" = "1" ]; then
  step "A3. stage eerg on the meta-response target (train.target=meta) -> $AV/eerg_meta, its test replies parsed"
  T=(--config tiny --set data.train="$RUN/data/train.jsonl" --set data.valid="$RUN/data/valid.jsonl"
     --set data.test="$RUN/data/test.jsonl" --set index.path="$RUN/index" --set vision.feature_cache="$RUN/features"
     --set vision.path="$RUN/vision" --set train.out="$RUN")
  if [ -d "$RUN/lm" ]; then  # the quickstart's pre-trained tiny LM: same tokenizer as $RUN/rep, so start from it
    T+=(--set llm.path="$RUN/lm" --set llm.tokenizer="$RUN/lm/tokenizer.model" --set train.init_from_rep=true)
  else  # the random tiny LM: the meta run trains its own tokenizer (the block's words), so a fresh Linear
    T+=(--set train.init_from_rep=false)
  fi
  q elmd train --stage eerg --out "$AV/eerg_meta" --overwrite "${T[@]}" --set train.target=meta \
    --set prompt.max_target_length=96 --set train.eerg_epochs="${AVATAR_META_EPOCHS:-3}" | tail -n 1
  q elmd generate --checkpoint "$AV/eerg_meta" --data "$RUN/data/test.jsonl" --out "$AV/meta_preds.jsonl" \
    --heads avatar --set data.max_samples="$ROWS" --set generate.max_new_tokens=96 --overwrite --no-progress | tail -n 2
  show_rows "$AV/meta_preds.jsonl"
fi
