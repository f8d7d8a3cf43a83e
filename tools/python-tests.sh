#!/usr/bin/env bash
# Builds the Python module with `pip install .` into a virtual environment (build-venv/, reused on
# later runs) and runs its pytest suite (tests/python), which compares it with build/cnncert.
# The CUDA engine is left out of this build to save time (CNNCERT_PYTHON_CUDA=AUTO builds it as the
# default `pip install .` does). PYTHON selects the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${CNNCERT_JOBS:-2}"
venv=build-venv
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q numpy pytest pandas
# The build directory persists, so a rerun only recompiles what changed.
CMAKE_BUILD_PARALLEL_LEVEL="$jobs" "$venv/bin/python" -m pip install -q . \
  -Cbuild-dir=build-pip -Ccmake.define.CNNCERT_CUDA="${CNNCERT_PYTHON_CUDA:-OFF}"
# Run from outside the clone so that `import cnncert` is the installed module, not python/cnncert.
status=0
(cd "$venv" && bin/python -m pytest -q -p no:cacheprovider "$OLDPWD/tests/python") || status=$?
((status == 5)) && { echo "pytest collected no test" >&2; status=1; }  # a silent empty suite is a failure
exit "$status"
