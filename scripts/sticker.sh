#!/usr/bin/env bash
# The sticker head (issue 14) on a quickstart run folder, CPU, tiny preset:
#   draw the bundled stickers -> attach them to ~60% of the splits' replies -> embed the library with the
#   run's visual encoder -> a tiny random SD pipeline -> stage sticker for ELMD (from $RUN/eerg) and for a
#   text-only variant (no video; from $RUN/ablations/wo_v when the quickstart made it) -> generate the
#   test split with --heads sticker -> evaluate -> a table: sticker emotion accuracy vs the library's
#   emotion prior, Freq, MMr, f-MMr.
#     RUN=runs/sample bash scripts/sticker.sh        # after scripts/quickstart.sh (which may source it)
# Writes $RUN/stickers (library), $RUN/tiny-sd, $RUN/data/*_stickers.jsonl, $RUN/sticker,
# $RUN/sticker_text_only, $RUN/eval_sticker/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/${ELMD_VENV:-.venv}/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN="${RUN:-${ELMD_RUN:-runs/sample}}"
for need in eerg/meta.json data/train.jsonl index vision features; do
  [ -e "$RUN/$need" ] || { echo "$RUN/$need is missing — run scripts/quickstart.sh first (ELMD_RUN=$RUN)" >&2; exit 2; }
done
if ! declare -F q >/dev/null; then  # standalone: step runner with its logs beside the quickstart's
  _run="$RUN"; RUN="$RUN/sticker-logs"; source scripts/steps.sh; RUN="$_run"
fi

D="$RUN/data"
T=(--config tiny --set data.train="$D/train_stickers.jsonl" --set data.valid="$D/valid_stickers.jsonl"
   --set data.test="$D/test_stickers.jsonl" --set index.path="$RUN/index" --set vision.feature_cache="$RUN/features"
   --set vision.path="$RUN/vision" --set train.out="$RUN" --set sticker.library="$RUN/stickers"
   --set sticker.sd_path="$RUN/tiny-sd" --set prompt.max_target_length=24)
# max_target_length 24: the run follows at most 24 reply tokens in training, and generation gets room for it
# (generate.max_new_tokens=40): the random tiny LM rarely ends a reply, so without it the run comes late if at all.
TEXT_FROM="$RUN/eerg"
[ -f "$RUN/ablations/wo_v/meta.json" ] && TEXT_FROM="$RUN/ablations/wo_v"

step "S1. bundled stickers (data/sample/stickers/, cached) -> stickers on the splits' replies -> library $RUN/stickers"
q elmd sticker draw-library
for s in train valid test; do
  q elmd sticker attach --data "$D/$s.jsonl" --out "$D/${s}_stickers.jsonl" --overwrite
done
q elmd sticker build-library --images data/sample/stickers --meta data/sample/stickers/stickers.jsonl \
  --out "$RUN/stickers" --overwrite "${T[@]}"
q elmd sticker make-tiny-sd --out "$RUN/tiny-sd" --overwrite

step "S2. stage sticker ([IMG1..8] rows + retrieval projection + feature mapper on eerg) -> $RUN/sticker,
   and without video (from $TEXT_FROM) -> $RUN/sticker_text_only"
# the two trainings (and below the two generations) run side by side: one core each
OMP_NUM_THREADS=1 q elmd train --stage sticker --overwrite "${T[@]}" >"$RUN/sticker.train.out" & elmd_pid=$!
OMP_NUM_THREADS=1 q elmd train --stage sticker --ablation wo_v --out "$RUN/sticker_text_only" --overwrite "${T[@]}" \
  --set sticker.init_from="$TEXT_FROM" >"$RUN/sticker_text_only.train.out" & text_pid=$!
wait "$elmd_pid"
wait "$text_pid"
tail -q -n 1 "$RUN/sticker.train.out" "$RUN/sticker_text_only.train.out"

step "S3. generate the test split with --heads sticker (retrieve; the [IMG] projection picks the sticker) -> $RUN/eval_sticker"
rm -rf "$RUN/eval_sticker"
gen() {  # NAME CHECKPOINT [--set ...]: predictions of the test split with the sticker head
  local name=$1 ckpt=$2
  shift 2
  q elmd generate --checkpoint "$ckpt" --data "$D/test_stickers.jsonl" --out "$RUN/eval_sticker/$name/preds.jsonl" \
    --heads sticker --no-progress --set generate.max_new_tokens=40 "$@" >"$RUN/eval_sticker.$name.out"
}
OMP_NUM_THREADS=1 gen elmd "$RUN/sticker" --set sticker.emotion_mode=ignore & elmd_pid=$!
OMP_NUM_THREADS=1 gen text_only "$RUN/sticker_text_only" --set sticker.emotion_mode=ignore & text_pid=$!
wait "$elmd_pid"
wait "$text_pid"
gen generate "$RUN/sticker" --set sticker.backend=generate & gen_pid=$!  # PNG stickers from the tiny SD
for m in elmd text_only; do
  q elmd evaluate --pred "$RUN/eval_sticker/$m/preds.jsonl" --out "$RUN/eval_sticker/$m" --no-progress >/dev/null
done
wait "$gen_pid"
tail -q -n 1 "$RUN"/eval_sticker.{elmd,text_only,generate}.out
rm -f "$RUN"/eval_sticker.*.out "$RUN"/sticker*.train.out

step "Sticker head on the test split (sticker emotion accuracy vs the reference reply's emotion)"
"${ELMD_VENV:-.venv}/bin/python" - "$RUN" <<'PY'
import glob, json, sys
run = sys.argv[1]
rep = {m: json.load(open(f"{run}/eval_sticker/{m}/report.json"))["heads"]["sticker"] for m in ("elmd", "text_only")}
val = {m: json.load(open(f"{run}/{f}/meta.json"))["sticker_valid"] for m, f in (("elmd", "sticker"), ("text_only", "sticker_text_only"))}
fmt = lambda v: "-" if v is None else f"{v:6.2f}"
print(f"  {'model':<22} {'Sticker-Emo-Acc':>15} {'Freq':>6} {'MMr':>6} {'f-MMr':>6} {'R@5':>6}  valid Emo-Acc (teacher forced)")
print(f"  {'library emotion prior':<22} {fmt(rep['elmd']['Library-prior']):>15}")
for m, name in (("elmd", "ELMD + sticker"), ("text_only", "text-only + sticker")):
    r = rep[m]
    print(f"  {name:<22} {fmt(r['Sticker-Emo-Acc']):>15} {fmt(r['Freq']):>6} {fmt(r['MMr']):>6} {fmt(r['f-MMr']):>6} "
          f"{fmt(r.get('R@5')):>6}  {100 * val[m]['emotion_accuracy']:6.2f}")
print(f"  replies with a sticker: ELMD {rep['elmd']['with_sticker']}/{rep['elmd']['rows']}, "
      f"text-only {rep['text_only']['with_sticker']}/{rep['text_only']['rows']}; "
      f"generate backend: {len(glob.glob(f'{run}/eval_sticker/generate/preds.media/*.png'))} PNG stickers")
PY
