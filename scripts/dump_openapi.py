#!/usr/bin/env python3
"""Print the gateway's OpenAPI document (JSON), building the app without connecting to anything.

The browser app's wire types are generated from this document:
    python scripts/dump_openapi.py > clients/web/src/api/openapi.json && (cd clients/web && npm run gen:api)
"""

from __future__ import annotations

import json
import sys

from stockzen_gateway.bootstrap import build_app
from stockzen_gateway.config import GatewaySettings

# Placeholders that satisfy the settings' checks; nothing connects while the document is built.
_OFFLINE_SETTINGS = {
    "STOCKZEN_ENV": "test",
    "JWT_SECRET": "openapi-dump-only-" + "x" * 40,
    "INTERNAL_TOKEN_SECRET": "openapi-dump-only-" + "y" * 40,
}


def openapi_document() -> dict[str, object]:
    """The gateway's OpenAPI document."""
    settings = GatewaySettings.model_validate(_OFFLINE_SETTINGS)
    return build_app(settings).openapi()


def main() -> int:
    json.dump(openapi_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
