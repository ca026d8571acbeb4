#!/usr/bin/env bash
# Install Autobahn|Testsuite (wstest; Python 2.7 code) into a virtualenv.
#   install_autobahn.sh [DEST]        (default: ${TMPDIR:-/tmp}/ab27)
# Needs a CPython 2.7 interpreter: $PY27, else python2.7 on PATH, else one under pyenv's versions
# directory (the machine image carries 2.7.18 there; Debian bookworm has no python2/pypy package).
# About 30 s: a few C extensions (wsaccel, ujson, cffi) build with gcc.
set -euo pipefail
DEST=${1:-${TMPDIR:-/tmp}/ab27}
HERE=$(cd "$(dirname "$0")" && pwd)
find_py27() {
  local root c
  root=$( (pyenv root 2>/dev/null) || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for c in ${PY27:-} "$root"/versions/2.7*/bin/python2.7 "$(command -v python2.7 2>/dev/null)"; do
    # a pyenv shim can exist without a usable interpreter behind it: try each candidate
    [ -n "$c" ] && [ -x "$c" ] && "$c" -c 'import sys; assert sys.version_info[0] == 2' 2>/dev/null && { echo "$c"; return; }
  done
}
PY27=$(find_py27 || true)
[ -n "$PY27" ] && [ -x "$PY27" ] || { echo "no CPython 2.7 interpreter found (set PY27)" >&2; exit 3; }
if [ -x "$DEST/bin/wstest" ]; then "$DEST/bin/wstest" --autobahnversion; exit 0; fi
TOOLS=$(mktemp -d)
python3 -m venv "$TOOLS/venv"
# virtualenv < 20.22 is the last series able to create Python 2.7 environments
"$TOOLS/venv/bin/pip" install -q 'virtualenv<20.22' 2>&1 | grep -v 'is ignored' || true
"$TOOLS/venv/bin/virtualenv" -q -p "$PY27" "$DEST"
rm -rf "$TOOLS"
"$DEST/bin/pip" install -q -r "$HERE/autobahn-py27-requirements.txt" 2>&1 | grep -v -e DEPRECATION -e 'is ignored' || true
"$DEST/bin/wstest" --autobahnversion
