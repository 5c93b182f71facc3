#!/usr/bin/env bash
# The whole tiny pipeline on the real CPED corpus (text only), end to end, on a CPU:
#   prepare CPED's splits -> emotional retriever (+ w/o ERT, w/o SSC) and their indexes ->
#   stage eerg (ELMD) and its ablations -> generate on the test split -> evaluate -> Table 2 / Table 3.
# CPED's videos are not available here, so every stage runs with video off (vision.use_video=false):
# stage rep has nothing to train without video tokens and is skipped (eerg starts from a fresh
# Linear, which carries no video either), and the rows w/o V and w/o REP equal ELMD's.
#   CPED_CSV=path    CPED's csv (default ../shared/data/cped/valid_split.csv)
#   ELMD_RUN=dir     where everything goes (default runs/cped)
#   CPED_SAMPLES=n   cap the samples per split (default 0 = all)
#   ELMD_SEEDS="0 1 2"  training / sampling seeds of the tables (mean ± sd); ELMD_JOBS=2 seeds at a time
#   ELMD_LM=1        use a tiny LM pre-trained on CPED's train split (elmd lm pretrain) instead of the random one
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/${ELMD_VENV:-.venv}/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
CSV="${CPED_CSV:-../shared/data/cped/valid_split.csv}"
RUN="${ELMD_RUN:-runs/cped}"
read -r -a SEEDS <<<"${ELMD_SEEDS:-0 1 2}"
FIRST=${SEEDS[0]}
JOBS=${ELMD_JOBS:-2}
if [ ! -f "$CSV" ]; then
  echo "error: CPED not found at $CSV — set CPED_CSV=path/to/valid_split.csv (see data/README.md)" >&2
  exit 2
fi
T=(--config tiny --set data.train="$RUN/data/train.jsonl" --set data.valid="$RUN/data/valid.jsonl"
   --set data.test="$RUN/data/test.jsonl" --set index.path="$RUN/index" --set train.out="$RUN"
   --set vision.use_video=false --set vision.feature_cache= --set train.init_from_rep=false
   --set data.max_samples="${CPED_SAMPLES:-0}")
# shellcheck source=scripts/steps.sh
source scripts/steps.sh

step "1. CPED's splits -> $RUN/data (13 emotions mapped to M3ED's 7; text only)"
q elmd data prepare --format cped --input "$CSV" --out "$RUN/data" --config tiny
echo "   no videos: stages run with vision.use_video=false; stage rep (video Linear only) is skipped"

if [ "${ELMD_LM:-0}" = 1 ]; then  # opt-in: readable replies, but each eerg takes ~13 min instead of ~2 (BENCHMARKS.md)
  step "1b. (ELMD_LM=1) the tiny GLM pre-trained as a causal LM on CPED's train split (cached) -> $RUN/lm"
  q elmd lm pretrain --data "$RUN/data/train.jsonl" --out "$RUN/lm" --config tiny
  T+=(--set llm.path="$RUN/lm" --set llm.tokenizer="$RUN/lm/tokenizer.model")
fi

step "2. emotional retrievers (ERT + SSC, w/o ERT, w/o SSC) and their indexes"
q elmd retriever train --out "$RUN/retriever" "${T[@]}"
q elmd index build --retriever "$RUN/retriever" --out "$RUN/index" "${T[@]}"
for a in wo_ert wo_ssc; do
  q elmd retriever train "--no-${a#wo_}" --out "$RUN/retriever-$a" "${T[@]}"
  q elmd index build --retriever "$RUN/retriever-$a" --out "$RUN/index-$a" "${T[@]}"
done

step "3-4. for each seed (${SEEDS[*]}, $JOBS at a time): stage eerg (prefix; video off) and its ablations,
   then predictions of the test split and their scores. Seed $FIRST -> $RUN/{eerg,ablations,eval}, others -> $RUN/seeds/SEED"
one_seed() {
  local seed=$1 S="$RUN" a
  [ "$seed" = "$FIRST" ] || S="$RUN/seeds/$seed"
  local TS=("${T[@]}" --set train.seed="$seed" --set train.out="$S") G=(--set generate.seed="$seed")
  q elmd train --stage eerg --overwrite "${TS[@]}" >/dev/null
  for a in wo_erm wo_ert wo_ssc; do
    q elmd train --stage eerg --ablation "$a" --out "$S/ablations/$a" --overwrite "${TS[@]}" >/dev/null
  done
  rm -rf "$S/eval"  # predictions of the models just trained
  gen_eval "$S" elmd "ELMD (tiny, text)" "$S/eerg" none "${G[@]}"
  gen_eval "$S" text_only "text-only" "$S/ablations/wo_erm" text-only "${G[@]}"
  gen_eval "$S" retrieval_only "retrieval-only" "$S/eerg" retrieval-only "${G[@]}"
  for a in wo_ert wo_ssc; do
    gen_eval "$S" "$a" "w/o $(echo "${a#wo_}" | tr a-z A-Z)" "$S/ablations/$a" none "${G[@]}"
  done
}
run_seeds one_seed

step "5. Table 2 (ELMD, text-only, retrieval-only) and Table 3 (ablations), mean ± sd over the seeds -> $RUN/report"
elmd report --runs $(each elmd text_only retrieval_only) --ablations $(each elmd text_only wo_ert wo_ssc) --out "$RUN/report"
echo "(text-only = w/o ERM here: without video the two models are the same; w/o V and w/o REP equal ELMD)"
