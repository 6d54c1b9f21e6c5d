#!/usr/bin/env python3
"""Mint a development bearer token for the gateway (HS256 with JWT_SECRET).

make token                        # a new tenant and user
make token TENANT=<uuid> USER_ID=alice
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid

from stockzen_platform.identity import Identity, TokenIssuer
from stockzen_platform.settings import DEVELOPMENT_JWT_SECRET


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenant", type=uuid.UUID, default=None, help="tenant id (default: a new one)")
    parser.add_argument("--user", default="dev-user", help="user id (the sub claim)")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    args = parser.parse_args()
    tenant = args.tenant or uuid.uuid4()
    secret = os.environ.get("JWT_SECRET") or DEVELOPMENT_JWT_SECRET
    token = TokenIssuer(algorithm="HS256", key=secret).issue(Identity(args.user, tenant), ttl_seconds=args.ttl)
    print(f"# tenant {tenant}, user {args.user}, valid {args.ttl} s", file=sys.stderr)
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
