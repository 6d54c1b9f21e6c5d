"""``stockzen-gateway``: serve the gateway."""

from __future__ import annotations

import sys
from types import FrameType

import uvicorn

from stockzen_platform.logging import configure_logging

from .bootstrap import build_adapters, build_app
from .config import GatewaySettings
from .ports import CheckpointAnnouncements


class _GatewayServer(uvicorn.Server):
    """Uvicorn waits for open responses before shutting down; live streams never end by themselves,
    so a stop signal first tells them to finish."""

    def __init__(self, config: uvicorn.Config, announcements: CheckpointAnnouncements) -> None:
        super().__init__(config)
        self._announcements = announcements

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._announcements.close_soon()
        super().handle_exit(sig, frame)


def main() -> int:
    """Read settings (failing fast on bad secrets) and serve."""
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_format)
    adapters = build_adapters(settings)
    app = build_app(settings, adapters)
    # uvloop and httptools (named, not "auto", so a missing one fails loudly): the profile under
    # `make bench` shows the asyncio loop's socket writes and h11's parsing among the top costs.
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
    _GatewayServer(config, adapters.announcements).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
