"""What the numbers were measured on: CPU, cores, memory, Python, package versions, load, date."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "managed-websocket",
    "anyio",
    "trio",
    "wsproto",
    "websockets",
    "trio-websocket",
    "aiohttp",
    "picows",
    "aiofastnet",
)


@dataclass
class Machine:
    cpu: str
    cores: str
    memory: str
    system: str
    python: str
    packages: dict[str, str]
    source: str
    started: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat("T", "seconds")
    )


@dataclass(frozen=True)
class Load:
    when: str
    averages: tuple[float, float, float]

    def __str__(self) -> str:
        one, five, fifteen = self.averages
        return f"{one:.2f} / {five:.2f} / {fifteen:.2f} ({self.when})"


def load(when: str) -> Load:
    one, five, fifteen = os.getloadavg()
    return Load(when, (one, five, fifteen))


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"uptime failed: {exc}"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _source(root: Path) -> str:
    """The commit the library was measured at, and whether src/ had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], check=False, cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--", "src")
    return f"{commit} + uncommitted changes in src/" if dirty else commit


def describe(root: Path) -> Machine:
    usable = len(os.sched_getaffinity(0))
    return Machine(
        cpu=_cpu_model(),
        cores=f"{os.cpu_count()} logical ({usable} usable by this process)",
        memory=_memory(),
        system=f"{platform.system()} {platform.release()} ({platform.machine()})",
        python=f"{platform.python_implementation()} {platform.python_version()}",
        packages={name: _version(name) for name in PACKAGES},
        source=_source(root),
    )
