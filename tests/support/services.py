"""Where the tests find Postgres, Redis and RabbitMQ.

Where a Docker engine answers, fresh Postgres, Redis and RabbitMQ containers are started with
testcontainers; otherwise (as on the CI machine) the local services, or whatever the environment
variables name, are used. ``STOCKZEN_TEST_CONTAINERS=0`` forces the latter, ``=1`` insists on Docker. Test resources get names of their own: the ``stockzen_test``
database, Redis database 15 with a per-run key prefix, and a per-run queue name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class ServiceUrls:
    """Connection URLs for one test run."""

    admin_url: str  # superuser, on the test database
    admin_server_url: str  # superuser, on the maintenance database (creates roles and databases)
    app_url: str  # the application role on the test database
    redis_url: str
    amqp_url: str
    run_id: str  # names this run's queue and key prefix

    @property
    def queue_name(self) -> str:
        return f"stockzen.test.{self.run_id}.sync"

    @property
    def redis_prefix(self) -> str:
        return f"sztest:{self.run_id}:"


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def docker_engine_answers() -> bool:
    """True when a Docker engine (not just the client) responds."""
    if not shutil.which("docker"):
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextmanager
def service_urls() -> Iterator[ServiceUrls]:
    """The services for this test run (containers if asked for and possible, else the environment's)."""
    run_id = uuid.uuid4().hex[:10]
    database = os.environ.get("TEST_DATABASE_NAME", "stockzen_test")
    if _want_containers():
        with _containers() as (admin, redis, amqp):
            yield _urls(admin, redis, amqp, database, run_id, app_password="stockzen-test-app-password")
        return
    admin = os.environ.get("DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    amqp = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    yield _urls(admin, redis, amqp, database, run_id)


def _want_containers() -> bool:
    choice = os.environ.get("STOCKZEN_TEST_CONTAINERS", "auto")
    if choice == "0":
        return False
    answers = docker_engine_answers()
    if choice == "1" and not answers:
        raise RuntimeError("STOCKZEN_TEST_CONTAINERS=1 but no Docker engine answers")
    return answers


def _urls(
    admin: str, redis: str, amqp: str, database: str, run_id: str, app_password: str | None = None
) -> ServiceUrls:
    server = urlsplit(admin)
    host = server.hostname or "127.0.0.1"
    port = server.port or 5432
    credentials = f"stockzen_app:{app_password}" if app_password else "stockzen_app"
    return ServiceUrls(
        admin_url=_with_database(admin, database),
        admin_server_url=admin,
        app_url=f"postgresql://{credentials}@{host}:{port}/{database}",
        redis_url=redis,
        amqp_url=amqp,
        run_id=run_id,
    )


@contextmanager
def _containers() -> Iterator[tuple[str, str, str]]:
    # testcontainers 4: the community paths; RabbitMqContainer warns on import, so a plain container
    # waiting for the broker's own "started" line stands in for it.
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.redis import RedisContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    with ExitStack() as stack:
        pg = stack.enter_context(PostgresContainer("postgres:15", driver=None))
        redis = stack.enter_context(RedisContainer("redis:7"))
        rabbit = stack.enter_context(
            DockerContainer("rabbitmq:3.10")
            .with_exposed_ports(5672)
            .waiting_for(LogMessageWaitStrategy("Server startup complete"))
        )
        admin = pg.get_connection_url()
        redis_url = f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/15"
        amqp = f"amqp://guest:guest@{rabbit.get_container_host_ip()}:{rabbit.get_exposed_port(5672)}/"
        yield admin, redis_url, amqp
