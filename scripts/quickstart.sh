#!/usr/bin/env bash
# The main job on the bundled sample, end to end, on a CPU (tiny preset):
#   install (if needed) -> draw the sample's face videos -> prepare the splits -> train the
#   emotional retriever -> build the demonstration index -> pre-train the tiny visual encoder on
#   synthetic faces -> cache the video features ->
#   (ELMD_LM=1: pre-train the tiny GLM on train-split dialogue text) -> for each of 3 seeds: train stage rep (with
#   and without video) -> stage eerg -> ablation and baseline models -> generate -> evaluate ->
#   report (Table-2 and Table-3 style tables, mean ± sd over the seeds) -> the sticker head and the
#   avatar head on the first seed's models (scripts/sticker.sh, scripts/avatar.sh)
# Everything lands in runs/sample/ (override with ELMD_RUN=dir; ELMD_SEEDS="0 1 2", ELMD_JOBS=2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/${ELMD_VENV:-.venv}/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN="${ELMD_RUN:-runs/sample}"
read -r -a SEEDS <<<"${ELMD_SEEDS:-0 1 2}"  # Tables 2 / 3 report mean ± sd over these training seeds
FIRST=${SEEDS[0]}
JOBS=${ELMD_JOBS:-2}
Q=(--config tiny)
T=("${Q[@]}" --set data.train="$RUN/data/train.jsonl" --set data.valid="$RUN/data/valid.jsonl"
   --set data.test="$RUN/data/test.jsonl" --set index.path="$RUN/index"
   --set vision.feature_cache="$RUN/features" --set vision.path="$RUN/vision" --set train.out="$RUN")

# shellcheck source=scripts/steps.sh
source scripts/steps.sh  # step banners; `q CMD` = CMD with stderr in $RUN/logs, shown when CMD fails

step "1. face videos of the bundled sample (cached in data/sample/videos/)"
elmd data make-videos --data data/sample/dialogues.jsonl

step "2. canonical splits -> $RUN/data. The sample tells each situation seven ways, so valid/test
   replies that also occur in train lose their label (they stay as context; stats.json counts them)"
q elmd data prepare --format jsonl --input data/sample/dialogues.jsonl --out "$RUN/data" "${Q[@]}" \
  --set data.unlabel_copies=true --overwrite

if [ "${ELMD_LM:-0}" = 1 ]; then  # opt-in: the frozen pre-trained tiny LM blocks the video path (README Status)
  CPED=../shared/data/cped/valid_split.csv
  LM_DATA=(--data "$RUN/data/train.jsonl")
  if [ -f "$CPED" ]; then  # real Chinese dialogue text for the tiny LM, when ../shared is there
    q elmd data prepare --format cped --input "$CPED" --out "$RUN/cped_data" "${Q[@]}" --overwrite >/dev/null
    LM_DATA+=(--data "$RUN/cped_data/train.jsonl")
  fi
  step "2b. (ELMD_LM=1) the tiny GLM pre-trained as a causal LM on the train splits' dialogue text (the
   sample's, and CPED's when ../shared/data/cped is there; cached by its inputs) -> $RUN/lm"
  q elmd lm pretrain "${LM_DATA[@]}" --out "$RUN/lm" "${Q[@]}"
  T+=(--set llm.path="$RUN/lm" --set llm.tokenizer="$RUN/lm/tokenizer.model")
fi

step "3. emotional retriever (ERT + SSC + emotion head; search scoring tuned on valid) -> $RUN/retriever,
   demonstration index (emotion-aware scoring stored in its meta.json) -> $RUN/index"
q elmd retriever train --out "$RUN/retriever" "${T[@]}"
q elmd index build --retriever "$RUN/retriever" --out "$RUN/index" "${T[@]}"

step "4. tiny ViT + Q-Former pre-trained on synthetic faces (stand-in for BLIP-2) -> $RUN/vision,
   then its frozen features of every video -> $RUN/features"
q elmd features pretrain-encoder --out "$RUN/vision" "${T[@]}"
q elmd features extract --data data/sample/dialogues.jsonl "${T[@]}"

step "5-8. for each seed (${SEEDS[*]}; ELMD_SEEDS to change, ELMD_JOBS=$JOBS at a time): stage rep with and
   without video, stage eerg (prefix + Linear from rep), the ablations and the text-only model, then
   predictions of the test split and their scores. Seed $FIRST -> $RUN/{rep,rep_wo_v,eerg,ablations,eval},
   other seeds -> $RUN/seeds/SEED/ (the retrievers and indexes are shared)"
for a in wo_ert wo_ssc; do  # retrievers without ERT / SSC and their indexes (index.path-wo_*), for Table 3
  q elmd retriever train "--no-${a#wo_}" --out "$RUN/retriever-$a" "${T[@]}"
  q elmd index build --retriever "$RUN/retriever-$a" --out "$RUN/index-$a" "${T[@]}"
done

one_seed() {  # SEED: every model of Tables 2 / 3 trained and evaluated with this seed
  local seed=$1 S="$RUN" a
  [ "$seed" = "$FIRST" ] || S="$RUN/seeds/$seed"
  local TS=("${T[@]}" --set train.seed="$seed" --set train.out="$S")
  q elmd train --stage rep --overwrite "${TS[@]}" >/dev/null
  q elmd train --stage rep --ablation wo_v --out "$S/rep_wo_v" --overwrite "${TS[@]}" >/dev/null
  q elmd train --stage eerg --overwrite "${TS[@]}" >/dev/null
  for a in wo_erm wo_ert wo_ssc wo_v wo_rep; do
    q elmd train --stage eerg --ablation "$a" --out "$S/ablations/$a" --overwrite "${TS[@]}" >/dev/null
  done
  q elmd train --stage eerg --ablation wo_v --out "$S/ablations/text_only" --overwrite "${TS[@]}" \
    --set prompt.use_demonstration=false --set train.init_from_rep=false >/dev/null
  rm -rf "$S/eval"  # predictions of the models just trained, not of an earlier run
  local G=(--set generate.seed="$seed")
  gen_eval "$S" elmd "ELMD (tiny)" "$S/eerg" none "${G[@]}"
  gen_eval "$S" text_only "text-only" "$S/ablations/text_only" text-only "${G[@]}"
  gen_eval "$S" single_frame "single-frame" "$S/ablations/wo_erm" single-frame "${G[@]}"
  gen_eval "$S" retrieval_only "retrieval-only" "$S/eerg" retrieval-only "${G[@]}"
  for a in wo_erm wo_ert wo_ssc wo_v wo_rep; do
    gen_eval "$S" "$a" "w/o $(echo "${a#wo_}" | tr a-z A-Z)" "$S/ablations/$a" none "${G[@]}"
  done
}

run_seeds one_seed

step "REP valid emotion accuracy (argmax over the label words' likelihood), mean ± sd over ${#SEEDS[@]} seeds"
"${ELMD_VENV:-.venv}/bin/python" - "${SEED_DIRS[@]}" <<'PY'
import json, statistics, sys
def acc(d, name):
    return json.load(open(f"{d}/{name}/meta.json"))["final"]["valid_accuracy"]
for name, what in (("rep", "rep with video"), ("rep_wo_v", "rep w/o V"), ("eerg", "eerg (ELMD)")):
    vals = [acc(d, name) for d in sys.argv[1:]]
    sd = f" ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else ""
    print(f"  {what:>15}: {statistics.mean(vals):.3f}{sd}   ({', '.join(f'{v:.3f}' for v in vals)})")
meta = json.load(open(f"{sys.argv[1]}/eerg/meta.json"))
print(f"  {'label prior':>15}: {meta['label_prior_accuracy']:.3f}")
print(f"  eerg's predicted valid labels (first seed): {meta['final'].get('valid_predicted')}")
PY

step "9. Table 2 (models and baselines) and Table 3 (ablations), mean ± sd over the seeds -> $RUN/report"
elmd report --runs $(each elmd text_only single_frame retrieval_only) \
  --ablations $(each elmd wo_erm wo_ert wo_ssc wo_v wo_rep) --out "$RUN/report"

step "10. the sticker head (stage sticker from $RUN/eerg, stickers retrieved for the test replies) -> $RUN/eval_sticker"
RUN="$RUN" bash scripts/sticker.sh

step "11. the avatar head (speech + talking face of test replies; prosody / lip-sync / closed-loop table) -> $RUN/avatar_eval"
RUN="$RUN" bash scripts/avatar.sh

step "done: what was produced"
find "$RUN" -maxdepth 2 -type f -not -path '*/features/*' -not -path '*/checkpoints/*' -not -path '*/logs/*' | sort
