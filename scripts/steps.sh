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

gen_eval() {  # FOLDER ROW-NAME CHECKPOINT BASELINE: predictions of the test split, then their scores
  q elmd generate --checkpoint "$3" --data "$RUN/data/test.jsonl" --out "$RUN/eval/$1/preds.jsonl" \
    --baseline "$4" --no-progress | tail -n 1
  elmd evaluate --pred "$RUN/eval/$1/preds.jsonl" --out "$RUN/eval/$1" --name "$2" --no-progress
}
