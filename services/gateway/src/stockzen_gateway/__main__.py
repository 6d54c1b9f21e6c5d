"""``stockzen-gateway``: serve the gateway."""

from __future__ import annotations

import sys
from types import FrameType

import uvicorn
from prometheus_client import start_http_server

from stockzen_platform.logging import configure_logging
from stockzen_platform.serving import STARTUP_FAILURE, server_config
from stockzen_platform.settings import load_settings

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
    settings = load_settings(GatewaySettings, "stockzen-gateway")
    configure_logging("gateway", settings.log_level, settings.log_format)
    adapters = build_adapters(settings)
    app = build_app(settings, adapters)
    # uvloop and httptools: the profile under `make bench` shows the asyncio loop's socket writes and
    # h11's parsing among the top costs. Request logs come from the app's middleware, not uvicorn's.
    config = server_config(app, host=settings.host, port=settings.port, settings=settings, access_log=False)
    # /metrics on a listener of its own (a thread of prometheus_client's), never the public port.
    metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host)
    server = _GatewayServer(config, adapters.announcements)
    try:
        server.run()
    finally:
        metrics_server.shutdown()
    return 0 if server.started else STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())
