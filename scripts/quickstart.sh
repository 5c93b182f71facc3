#!/usr/bin/env bash
# The main job on the bundled sample, end to end, on a CPU (tiny preset):
#   install (if needed) -> draw the sample's face videos -> prepare the splits -> train the
#   emotional retriever -> build the demonstration index -> pre-train the tiny visual encoder on
#   synthetic faces -> cache the video features ->
#   train stage rep (with and without video) -> train stage eerg -> ablation and baseline models
#   -> generate -> evaluate -> report (Table-2 and Table-3 style tables)
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
   --set vision.feature_cache="$RUN/features" --set vision.path="$RUN/vision" --set train.out="$RUN")

# shellcheck source=scripts/steps.sh
source scripts/steps.sh  # step banners; `q CMD` = CMD with stderr in $RUN/logs, shown when CMD fails

step "1. face videos of the bundled sample (cached in data/sample/videos/)"
elmd data make-videos --data data/sample/dialogues.jsonl

step "2. canonical splits -> $RUN/data, split by situation (the sample tells each situation seven ways:
   8 situations train, 2 valid, 2 test, so no test reply is in train; stats.json counts copies)"
q elmd data prepare --format jsonl --input data/sample/dialogues.jsonl --out "$RUN/data" "${Q[@]}" \
  --split-by series --set 'data.split_ratios=[0.66,0.17,0.17]' --overwrite

CPED=../shared/data/cped/valid_split.csv
LM_DATA=(--data "$RUN/data/train.jsonl")
if [ -f "$CPED" ]; then  # real Chinese dialogue text for the tiny LM, when ../shared is there
  q elmd data prepare --format cped --input "$CPED" --out "$RUN/cped_data" "${Q[@]}" --overwrite >/dev/null
  LM_DATA+=(--data "$RUN/cped_data/train.jsonl")
fi
step "2b. the tiny GLM pre-trained as a causal LM on the train splits' dialogue text (the sample's, and
   CPED's when ../shared/data/cped is there; cached by its inputs, a rerun reuses it) -> $RUN/lm"
q elmd lm pretrain "${LM_DATA[@]}" --out "$RUN/lm" "${Q[@]}"
T+=(--set llm.path="$RUN/lm" --set llm.tokenizer="$RUN/lm/tokenizer.model")

step "3. emotional retriever (ERT + SSC + emotion head; search scoring tuned on valid) -> $RUN/retriever,
   demonstration index (emotion-aware scoring stored in its meta.json) -> $RUN/index"
q elmd retriever train --out "$RUN/retriever" "${T[@]}"
q elmd index build --retriever "$RUN/retriever" --out "$RUN/index" "${T[@]}"

step "4. tiny ViT + Q-Former pre-trained on synthetic faces (stand-in for BLIP-2) -> $RUN/vision,
   then its frozen features of every video -> $RUN/features"
q elmd features pretrain-encoder --out "$RUN/vision" "${T[@]}"
q elmd features extract --data data/sample/dialogues.jsonl "${T[@]}"

step "5. stage rep (video Linear -> reply emotion) -> $RUN/rep, and rep w/o V -> $RUN/rep_wo_v"
q elmd train --stage rep --overwrite "${T[@]}"
q elmd train --stage rep --ablation wo_v --out "$RUN/rep_wo_v" --overwrite "${T[@]}"

step "6. stage eerg (p-tuning v2 prefix + Linear from rep) -> $RUN/eerg"
q elmd train --stage eerg --overwrite "${T[@]}"

step "REP valid emotion accuracy (argmax over the label words' likelihood)"
"${ELMD_VENV:-.venv}/bin/python" - "$RUN" <<'PY'
import json, sys
run = sys.argv[1]
for name, what in (("rep", "with video"), ("rep_wo_v", "w/o V")):
    meta = json.load(open(f"{run}/{name}/meta.json"))
    print(f"  {what:>10}: {meta['final']['valid_accuracy']:.3f}")
print(f"  label prior: {json.load(open(f'{run}/rep/meta.json'))['label_prior_accuracy']:.3f}")
PY

step "7. ablations (Table 3) and the text-only baseline model -> $RUN/ablations"
for a in wo_ert wo_ssc; do  # retrievers without ERT / SSC and their indexes (index.path-wo_*)
  flag="--no-${a#wo_}"
  q elmd retriever train "$flag" --out "$RUN/retriever-$a" "${T[@]}"
  q elmd index build --retriever "$RUN/retriever-$a" --out "$RUN/index-$a" "${T[@]}"
done
for a in wo_erm wo_ert wo_ssc wo_v wo_rep; do
  q elmd train --stage eerg --ablation "$a" --out "$RUN/ablations/$a" --overwrite "${T[@]}" | tail -n 1
done
q elmd train --stage eerg --ablation wo_v --out "$RUN/ablations/text_only" --overwrite "${T[@]}" \
  --set prompt.use_demonstration=false --set train.init_from_rep=false | tail -n 1

step "8. generate on the test split and evaluate -> $RUN/eval"
rm -rf "$RUN/eval"  # predictions of the models just trained, not of an earlier run
gen_eval elmd "ELMD (tiny)" "$RUN/eerg" none
gen_eval text_only "text-only" "$RUN/ablations/text_only" text-only
gen_eval single_frame "single-frame" "$RUN/ablations/wo_erm" single-frame
gen_eval retrieval_only "retrieval-only" "$RUN/eerg" retrieval-only
for a in wo_erm wo_ert wo_ssc wo_v wo_rep; do
  gen_eval "$a" "w/o $(echo "${a#wo_}" | tr a-z A-Z)" "$RUN/ablations/$a" none
done

step "9. Table 2 (models and baselines) and Table 3 (ablations) -> $RUN/report"
elmd report --runs "$RUN"/eval/{elmd,text_only,single_frame,retrieval_only} \
  --ablations "$RUN"/eval/{elmd,wo_erm,wo_ert,wo_ssc,wo_v,wo_rep} --out "$RUN/report"

step "done: what was produced"
find "$RUN" -maxdepth 2 -type f -not -path '*/features/*' -not -path '*/checkpoints/*' -not -path '*/logs/*' | sort
