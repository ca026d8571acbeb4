"""The benchmark clients. Each runs in its own process (``python -m benchmarks.client``).

The registry names modules as strings: a peer library that is missing breaks only its own rows.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from .common import Client

Backend = Literal["asyncio", "trio", "sync"]


@dataclass(frozen=True)
class ClientSpec:
    name: str
    label: str
    backend: Backend
    module: str  # under benchmarks.clients
    variant: str = ""
    package: str | None = None  # the PyPI distribution run.sh installs for it (None: ours)
    needs_module: str | None = None  # a module that must be importable (else "not available")
    floor: bool = False

    @property
    def title(self) -> str:
        return f"{self.label} ({self.backend})"

    def load(self) -> Client:
        module = importlib.import_module(f"benchmarks.clients.{self.module}")
        client: Client = module.make(self.variant)
        return client


_ANYIO_BACKENDS: tuple[Backend, ...] = ("asyncio", "trio")


def _managed(name: str, label: str, variant: str) -> list[ClientSpec]:
    return [
        ClientSpec(f"{name}-{backend}", label, backend, "managed", variant)
        for backend in _ANYIO_BACKENDS
    ]


SPECS: list[ClientSpec] = [
    ClientSpec("raw-socket", "raw floor: blocking socket", "sync", "raw", "socket", floor=True),
    ClientSpec("raw-asyncio", "raw floor: anyio stream", "asyncio", "raw", "anyio", floor=True),
    ClientSpec("raw-trio", "raw floor: anyio stream", "trio", "raw", "anyio", floor=True),
    *_managed("managed-iter", "managed `async for`, decode=None", "iter"),
    *_managed("managed-json", "managed `async for`, JSON decode", "json"),
    *_managed("managed-batches", "managed `batches()`, decode=None", "batches"),
    *_managed("connection", "connection layer `receive_batch()`", "connection"),
    ClientSpec(
        "websockets-asyncio",
        "websockets",
        "asyncio",
        "peer_websockets",
        "asyncio",
        package="websockets",
        needs_module="websockets.asyncio.client",
    ),
    ClientSpec(
        "websockets-trio",
        "websockets",
        "trio",
        "peer_websockets",
        "trio",
        package="websockets",
        needs_module="websockets.trio.client",
    ),
    ClientSpec(
        "trio-websocket",
        "trio-websocket",
        "trio",
        "peer_trio_websocket",
        package="trio-websocket",
        needs_module="trio_websocket",
    ),
    ClientSpec(
        "aiohttp", "aiohttp", "asyncio", "peer_aiohttp", package="aiohttp", needs_module="aiohttp"
    ),
    ClientSpec(
        "picows",
        "picows (callbacks)",
        "asyncio",
        "peer_picows",
        package="picows",
        needs_module="picows",
    ),
]

BY_NAME = {spec.name: spec for spec in SPECS}

#: The reference for the "vs websockets" ratios, and the floor for each backend.
REFERENCE = "websockets-asyncio"
FLOORS: dict[str, str] = {"asyncio": "raw-asyncio", "trio": "raw-trio"}
