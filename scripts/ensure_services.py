#!/usr/bin/env python3
"""Make sure Postgres, Redis and RabbitMQ answer; start local installs that are down.

Standard library only: it runs before the virtual environment exists. Addresses come from the same
environment variables the services read (DATABASE_ADMIN_URL, REDIS_URL, AMQP_URL).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _address(env: str, default: str, default_port: int) -> tuple[str, int]:
    # AMQP_URL may list a cluster's nodes, comma-separated: the first one stands for them here.
    parts = urlsplit((os.environ.get(env) or default).split(",")[0].strip())
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _wait(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _answers(host, port):
            return True
        time.sleep(0.5)
    return False


def _run(command: list[str] | str) -> None:
    subprocess.run(command, shell=isinstance(command, str), check=False, stdout=subprocess.DEVNULL)


def _start_postgres() -> bool:
    if not shutil.which("pg_ctlcluster"):
        return False
    for version in sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []:
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"])
    return True


def _start_redis() -> bool:
    if not shutil.which("redis-server"):
        return False
    os.makedirs("/var/lib/redis", exist_ok=True)
    os.makedirs("/var/log/redis", exist_ok=True)
    _run(
        "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' "
        "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
    )
    return True


def _start_rabbitmq() -> bool:
    if not shutil.which("rabbitmq-server"):
        return False
    _run(["rabbitmq-server", "-detached"])
    # Right after -detached the node is not yet known to epmd and await_startup fails at once.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = subprocess.run(["rabbitmqctl", "--timeout", "60", "await_startup"], capture_output=True, check=False)
        if done.returncode == 0:
            break
        time.sleep(2)
    return True


SERVICES = (
    # name, env var, default URL, default port, starter, how to get it
    (
        "Postgres",
        "DATABASE_ADMIN_URL",
        "postgresql://postgres@127.0.0.1:5432/postgres",
        5432,
        _start_postgres,
        "apt-get install postgresql (or: docker compose up -d postgres)",
    ),
    (
        "Redis",
        "REDIS_URL",
        "redis://127.0.0.1:6379/0",
        6379,
        _start_redis,
        "apt-get install redis-server (or: docker compose up -d redis)",
    ),
    (
        "RabbitMQ",
        "AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/",
        5672,
        _start_rabbitmq,
        "apt-get install rabbitmq-server (or: docker compose up -d rabbitmq)",
    ),
)


def main() -> int:
    missing = []
    for name, env, default, port, start, how in SERVICES:
        host, port = _address(env, default, port)
        if _answers(host, port):
            continue
        if host in LOCAL_HOSTS and start():
            print(f"started {name}", file=sys.stderr)
            if _wait(host, port, 90):
                continue
        missing.append(f"{name} does not answer on {host}:{port} ({env}). Get it: {how}")
    for line in missing:
        print(line, file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
