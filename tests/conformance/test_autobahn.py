"""Autobahn|Testsuite cases 1-7, 9 and 10 against our connection layer, on each backend.

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
    command = [
        sys.executable,
        runner,
        "--ab-python",
        ab_python,
        "--cases",
        CASES,
        "--outdir",
        str(tmp_path / "reports"),
        "--agent",
        agent,
        "--timeout",
        "600",
        "--",
        sys.executable,
        str(HERE / "testee.py"),
        "{url}",
        "--agent",
        "{agent}",
        "--backend",
        backend,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    output = result.stdout + result.stderr
    print(output)
    summary = re.search(r"^(\d+) passed, (\d+) failed$", result.stdout, re.MULTILINE)
    assert summary is not None, output
    passed, failed = int(summary[1]), int(summary[2])
    assert failed == 0, output
    assert passed >= 300, output  # 301 cases are selected; fewer means the run was cut short
    assert result.returncode == 0, output
