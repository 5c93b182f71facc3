#!/usr/bin/env bash
# Create or reuse .venv and install elmd with its dependencies.
# torch goes first (ELMD_TORCH, default torch==2.13.0: the CPU build on machines without CUDA);
# everything else is installed under a constraint that keeps that torch, because an unpinned
# resolve pulls a CUDA torch and gigabytes of nvidia-* packages.
# Idempotent: a second run with unchanged setup.py/constraints only checks and returns.
#   ELMD_VENV=path      virtual environment folder (default .venv)
#   ELMD_TORCH=spec     torch requirement to install first (default torch==2.13.0)
#   ELMD_EXTRAS=test,serve  extras of elmd to install (e.g. "test,serve,gpu" on a CUDA machine); with
#                       "serve", as root on Debian/Ubuntu, the browser of the page test is apt-installed
#                       when missing (chromium, chromium-driver, a CJK font; ELMD_NO_APT=1 skips it)
#   ELMD_UNPINNED=1     ignore constraints.txt (except torch): the newest versions setup.py allows, to
#                       upgrade; then run the tests and `python scripts/pin.py` (README "Reproducible installs")
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ELMD_VENV:-.venv}"
TORCH="${ELMD_TORCH:-torch==2.13.0}"
EXTRAS="${ELMD_EXTRAS:-test,serve}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

browser_deps() {  # the page test's headless browser: Debian packages, only where missing, only as root
  case ",$EXTRAS," in *,serve,*) ;; *) return 0 ;; esac
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && fc-list 2>/dev/null | grep -i "wqy\|noto sans cjk" >/dev/null; then
    return 0
  fi
  if [ -n "${ELMD_NO_APT:-}" ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "[install] note: no chromium + chromium-driver; the browser test of 'elmd serve' will be skipped" \
         "(as root: apt-get install chromium chromium-driver fonts-wqy-zenhei)"
    return 0
  fi
  echo "[install] apt-get install chromium chromium-driver fonts-wqy-zenhei (page test)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
      fonts-wqy-zenhei >/dev/null; } || echo "[install] warning: apt-get failed; the browser test will be skipped"
}

stamp="$VENV/.elmd-install-stamp"
want="$(cat setup.py constraints.txt | sha256sum | cut -c1-16) $TORCH $EXTRAS ${ELMD_UNPINNED:-pinned}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VPY" -c "import elmd, retrieval, torch" 2>/dev/null; then
  echo "[install] up to date ($VENV)"
  browser_deps
  exit 0
fi

"$VPY" -m pip install -q --upgrade pip
echo "[install] $TORCH"
"$VPY" -m pip install -q "$TORCH"
tmpc="$(mktemp)"; trap 'rm -f "$tmpc"' EXIT
if [ -z "${ELMD_UNPINNED:-}" ]; then grep -v '^torch==' constraints.txt > "$tmpc" || true; fi
"$VPY" -c "import torch; print('torch==' + torch.__version__.split('+')[0])" >> "$tmpc"
echo "[install] elmd[$EXTRAS] and dependencies (torch kept at $(tail -n1 "$tmpc"))"
"$VPY" -m pip install -q -c "$tmpc" -e ".[$EXTRAS]"
echo "$want" > "$stamp"
browser_deps
echo "[install] done: $("$VPY" -c 'import torch, transformers; print("torch", torch.__version__, "| transformers", transformers.__version__)')"
