"""Shared by the reliability tests: the fault-matrix collector.

Each case of ``test_fault_matrix.py`` records its outcome here once it has passed; the module
writes ``docs/fault-matrix.md`` from the rows at its end, and only if every case of the matrix ran
on every backend (a ``-k`` selection or a failure leaves the file as it was).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass(frozen=True)
class MatrixRow:
    fault: str
    backend: str
    outcome: str  # what happened, in a few words
    seconds: float | None  # measured: fault → recovered (or → the typed error raised)
    bound: float | None  # the bound the test asserted on ``seconds``
    note: str = ""


@dataclass
class FaultMatrix:
    rows: dict[tuple[str, str], MatrixRow] = field(default_factory=dict)

    def record(
        self,
        fault: str,
        backend: str,
        outcome: str,
        seconds: float | None,
        bound: float | None,
        note: str = "",
    ) -> None:
        self.rows[(fault, backend)] = MatrixRow(fault, backend, outcome, seconds, bound, note)


@pytest.fixture(scope="session")
def fault_matrix() -> FaultMatrix:
    """The rows of the fault matrix recorded so far in this session."""
    return FaultMatrix()
