#!/usr/bin/env bash
# The benchmark suite, in one command:   bash benchmarks/run.sh [--rounds N]
#
# Creates (or reuses) benchmarks/.venv, installs managed-websocket from this tree (editable, with
# trio) and the peer libraries from PyPI one by one, then runs `python -m benchmarks.suite`, which
# prints the markdown report and writes it to docs/benchmarks.md. A peer that fails to install is
# reported in the table as "install failed: <reason>". Not part of the CI test run; ~5 minutes.
#
# Environment: PYTHON (interpreter for the venv, default python3), BENCH_PEERS (default below).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=benchmarks/.venv
PEERS=${BENCH_PEERS:-"websockets trio-websocket aiohttp picows"}
started=$SECONDS

INSTALL_LOG=$(mktemp)
trap 'rm -f "$INSTALL_LOG"' EXIT

pip_install() {  # prints pip's output without the mirror-location warnings; pip's exit status
  local output status=0
  output=$(timeout 300 "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1) \
    || status=$?
  printf '%s\n' "$output" | grep -v "^WARNING: Location" || true
  return "$status"
}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
installed_from_here() {  # managed_websocket (and trio) import, from this tree's src/
  "$VENV/bin/python" -c 'import sys, trio, managed_websocket as m
sys.exit(not m.__file__.startswith(sys.argv[1]))' "$PWD/src/" 2>/dev/null
}

echo "run.sh: installing managed-websocket (editable) into $VENV" >&2
if ! output=$(pip_install -e '.[trio,bench]'); then
  if ! installed_from_here; then
    echo "run.sh: cannot install managed-websocket: $output" >&2
    exit 1
  fi
  echo "run.sh: pip failed, using the editable install already in $VENV" >&2
fi

for requirement in $PEERS; do
  peer=${requirement%%[<>=!~ \[]*}  # the distribution name, without a version specifier
  echo "run.sh: installing $requirement" >&2
  if output=$(pip_install "$requirement"); then
    version=$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$peer'))")
    printf '%s\tok\t%s\n' "$peer" "$version" >>"$INSTALL_LOG"
  else
    status=$?
    reason=$(printf '%s\n' "$output" | grep -E "ERROR|[Ee]rror" | tail -n 1 | tr '\t' ' ')
    reason=${reason#ERROR: }
    if [ "$status" -eq 124 ]; then reason="pip timed out after 300 s"; fi
    reason=${reason:-pip exit status $status}
    printf '%s\tfailed\t%s\n' "$peer" "$reason" >>"$INSTALL_LOG"
    echo "run.sh: $requirement: install failed: $reason" >&2
  fi
done

"$VENV/bin/python" -m benchmarks.suite --install-log "$INSTALL_LOG" "$@"
echo "run.sh: finished in $((SECONDS - started)) s" >&2
