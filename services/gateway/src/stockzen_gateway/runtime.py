"""What a request handler reaches for: the gateway's settings and its ports, built once per process.

Typed with the ports only, so the entrypoints never import an adapter or the composition root
(:mod:`stockzen_gateway.bootstrap` builds this and imports the entrypoints, never the other way round).
"""

from __future__ import annotations

from dataclasses import dataclass

from stockzen_platform.identity import TokenVerifier

from .config import GatewaySettings
from .domain.live_streams import LiveStreamSlots
from .domain.rate_limits import RateLimits
from .ports import CheckpointAnnouncements, InventoryReads, RateLimiter
from .services import SyncService


@dataclass(frozen=True)
class GatewayRuntime:
    """Everything a request handler needs, built once per process."""

    settings: GatewaySettings
    verifier: TokenVerifier
    sync: SyncService
    rate_limiter: RateLimiter
    rate_limits: RateLimits
    inventory: InventoryReads
    announcements: CheckpointAnnouncements
    streams: LiveStreamSlots
