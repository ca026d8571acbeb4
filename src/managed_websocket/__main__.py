"""``python -m managed_websocket``: the same as the ``managed-websocket`` command."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
