# Shared by scripts/quickstart.sh and scripts/cped.sh (sourced): a step banner and quiet steps.
# `q CMD...` runs CMD with its stderr (progress bars, warnings) in a log under $RUN/logs; when CMD
# fails, its exit code, the command and the log's last lines are shown and the script stops.

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

LOGS="$RUN/logs"
rm -rf "$LOGS" && mkdir -p "$LOGS"
q() {
  local log rc=0 t0=$SECONDS
  log="$(mktemp "$LOGS/${1##*/}-${2//[^A-Za-z0-9_-]/_}-XXXXXX.log")"
  "$@" 2>"$log" || rc=$?
  printf '%s\t%s\n' "$((SECONDS - t0))" "$*" >>"$LOGS/times.tsv"  # seconds per step, to see where time goes
  if [ "$rc" -ne 0 ]; then
    printf '\033[31mstep failed (exit %s): %s\033[0m\n' "$rc" "$*" >&2
    tail -n 40 "$log" | tr '\r' '\n' | tail -n 40 >&2
    printf '(full log: %s)\n' "$log" >&2
  fi
  return "$rc"
}

gen_eval() {  # RUN-DIR FOLDER ROW-NAME CHECKPOINT BASELINE [--set ...]: test-split predictions, then their scores
  local dir=$1 folder=$2 name=$3 ckpt=$4 baseline=$5
  shift 5
  q elmd generate --checkpoint "$ckpt" --data "$RUN/data/test.jsonl" --out "$dir/eval/$folder/preds.jsonl" \
    --baseline "$baseline" --no-progress "$@" | tail -n 1
  elmd evaluate --pred "$dir/eval/$folder/preds.jsonl" --out "$dir/eval/$folder" --name "$name" --no-progress
}

run_seeds() {  # FN: FN SEED for each of $SEEDS, $JOBS at a time (one thread each when parallel); sets SEED_DIRS
  local t0=$SECONDS seed threads k=0 n=${#SEEDS[@]}
  rm -f "$LOGS"/seed-*.ok
  for seed in "${SEEDS[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    k=$((k + 1)); threads=1  # a seed that runs alone at the end gets the threads of all jobs
    if [ "$JOBS" -le 1 ] || { [ "$k" -eq "$n" ] && [ $((n % JOBS)) -eq 1 ]; }; then threads=${OMP_NUM_THREADS:-$(nproc)}; fi
    (  # set -e holds here: the seed's first failing step ends it, before its .ok
      OMP_NUM_THREADS=$threads "$1" "$seed" >"$LOGS/seed-$seed.out"
      touch "$LOGS/seed-$seed.ok"
      echo "  seed $seed done ($((SECONDS - t0)) s)" ) &
  done
  wait || true
  local failed=()
  for seed in "${SEEDS[@]}"; do [ -f "$LOGS/seed-$seed.ok" ] || failed+=("$seed"); done
  if [ "${#failed[@]}" -gt 0 ]; then
    echo "seed(s) ${failed[*]} failed: see the step's error above and $LOGS/seed-*.out" >&2
    exit 1
  fi
  SEED_DIRS=("$RUN")
  for seed in "${SEEDS[@]}"; do [ "$seed" = "$FIRST" ] || SEED_DIRS+=("$RUN/seeds/$seed"); done
}

each() {  # NAME...: the eval folders of these rows in every seed's run folder (for elmd report)
  local d n
  for d in "${SEED_DIRS[@]}"; do for n in "$@"; do echo "$d/eval/$n"; done; done
}
