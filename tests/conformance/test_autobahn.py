"""Autobahn|Testsuite cases 1-7, 9, 10 and permessage-deflate (12, 13) against our connection
layer, on each backend.

All of 12 and 13 (216 cases) takes about 10 minutes per backend, nearly all of it in the fuzzing
server, so by default a representative third of each of their 12 groups runs: in each group
(12.1-12.5: five kinds of payload; 13.1-13.7: seven parameter sets the server answers with) the
smallest message (.1), a mid-sized one (.5) and the first auto-fragmented one (.11).
AUTOBAHN_DEFLATE=all runs all of 12 and 13 instead.

Runs the project's harness (`scripts/conformance/run_autobahn.py`), which starts the fuzzing server
on 127.0.0.1, drives `testee.py` through every case and prints `N passed, N failed`. scripts/test
installs the Python 2.7 Autobahn environment and exports AUTOBAHN_PYTHON / AUTOBAHN_RUNNER (or
AUTOBAHN_SKIP with the reason, where no Python 2.7 can be had; never under CI=true).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.conformance

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
CASES = "1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*"
BASE_COUNT = 301
DEFLATE_GROUPS = [f"12.{i}" for i in range(1, 6)] + [f"13.{i}" for i in range(1, 8)]
DEFLATE_SUBSET = ",".join(f"{group}.{case}" for group in DEFLATE_GROUPS for case in (1, 5, 11))


def _deflate_cases() -> tuple[str, int]:
    """The 12/13 cases to run and how many they are."""
    if os.environ.get("AUTOBAHN_DEFLATE") == "all":
        return "12.*,13.*", 18 * len(DEFLATE_GROUPS)
    return DEFLATE_SUBSET, 3 * len(DEFLATE_GROUPS)


def _tools() -> tuple[str, str]:
    ab_python = os.environ.get("AUTOBAHN_PYTHON", str(ROOT / ".venv-autobahn/bin/python"))
    runner = os.environ.get("AUTOBAHN_RUNNER", str(ROOT / "scripts/conformance/run_autobahn.py"))
    skip = os.environ.get("AUTOBAHN_SKIP")
    if skip and not os.environ.get("CI"):
        pytest.skip(skip)
    missing = [p for p in (ab_python, runner) if not Path(p).exists()]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"Autobahn tools missing in CI: {missing} (scripts/test installs them)")
        pytest.skip(f"Autobahn not installed ({missing}); run scripts/test to install it")
    return ab_python, runner


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_autobahn_cases_pass(backend: str, tmp_path: Path) -> None:
    ab_python, runner = _tools()
    agent = f"managed-websocket-{backend}"
    deflate_cases, deflate_count = _deflate_cases()
    command = [
        sys.executable,
        runner,
        "--ab-python",
        ab_python,
        "--cases",
        f"{CASES},{deflate_cases}",
        "--outdir",
        str(tmp_path / "reports"),
        "--agent",
        agent,
        "--timeout",
        "3000",
        "--",
        sys.executable,
        str(HERE / "testee.py"),
        "{url}",
        "--agent",
        "{agent}",
        "--backend",
        backend,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    output = result.stdout + result.stderr
    print(output)
    summary = re.search(r"^(\d+) passed, (\d+) failed$", result.stdout, re.MULTILINE)
    assert summary is not None, output
    passed, failed = int(summary[1]), int(summary[2])
    assert failed == 0, output
    # Fewer than selected means the run was cut short.
    assert passed == BASE_COUNT + deflate_count, output
    assert result.returncode == 0, output
