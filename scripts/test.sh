#!/usr/bin/env bash
# Install if needed, then run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec "${ELMD_VENV:-.venv}/bin/python" -m pytest -q "$@"
