"""``stockzen-gateway``: serve the gateway."""

from __future__ import annotations

import sys

import uvicorn

from stockzen_platform.logging import configure_logging

from .bootstrap import build_app
from .config import GatewaySettings


def main() -> int:
    """Read settings (failing fast on bad secrets) and serve."""
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    # uvloop and httptools (named, not "auto", so a missing one fails loudly): the profile under
    # `make bench` shows the asyncio loop's socket writes and h11's parsing among the top costs.
    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
