"""A multi-host ``DATABASE_URL`` is connected host by host, each with its own time limit, so a primary
that hangs (rather than refuses) cannot keep a pool from the standby Patroni promoted."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from stockzen_platform.postgres import each_host_in_turn, split_hosts

URL = "postgresql://stockzen_app:s3cret@127.0.0.1:5441,127.0.0.1:5442/stockzen?target_session_attrs=read-write"
FIRST = "postgresql://stockzen_app:s3cret@127.0.0.1:5441/stockzen?target_session_attrs=read-write"
SECOND = "postgresql://stockzen_app:s3cret@127.0.0.1:5442/stockzen?target_session_attrs=read-write"


def test_each_host_keeps_the_user_password_database_and_query() -> None:
    assert split_hosts(URL) == [FIRST, SECOND]


def test_a_single_host_url_is_left_as_it_is() -> None:
    assert split_hosts(FIRST) == [FIRST]
    assert split_hosts("postgresql://db.internal/stockzen") == ["postgresql://db.internal/stockzen"]


class _Hosts:
    """A stand-in for asyncpg.connect: each port answers as it is told to (an error, "hang" or "ok")."""

    def __init__(self, answers: dict[int, BaseException | str]) -> None:
        self.answers = answers
        self.tried: list[tuple[str, float]] = []

    async def connect(self, dsn: str, **options: Any) -> Any:  # a string stands for the connection
        limit: float = options["timeout"]
        self.tried.append((dsn, limit))
        answer = next(value for port, value in self.answers.items() if f":{port}/" in dsn)
        if answer == "hang":
            async with asyncio.timeout(limit):  # asyncpg.connect keeps to its timeout the same way
                await asyncio.sleep(3600)
        if isinstance(answer, BaseException):
            raise answer
        return f"connection to {dsn}"


@pytest.mark.parametrize(
    "failure",
    [
        "hang",
        ConnectionRefusedError(111, "refused"),
        asyncpg.TargetServerAttributeNotMatched("a standby: not read-write"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
    ],
    ids=["hangs", "refuses", "is-a-standby", "is-starting-up"],
)
async def test_the_next_host_is_tried_when_one_will_not_do(failure: BaseException | str) -> None:
    hosts = _Hosts({5441: failure, 5442: "ok"})
    connect = each_host_in_turn(hosts.connect, host_seconds=0.2)

    started = asyncio.get_running_loop().time()
    connection: object = await connect(URL, timeout=60, loop=None)

    assert connection == f"connection to {SECOND}"
    assert hosts.tried == [(FIRST, 0.2), (SECOND, 0.2)]  # each host its own limit, not the pool's 60 s
    assert asyncio.get_running_loop().time() - started < 5


async def test_a_wrong_password_is_not_hidden_by_trying_the_next_host() -> None:
    hosts = _Hosts({5441: asyncpg.InvalidPasswordError("password authentication failed"), 5442: "ok"})

    with pytest.raises(asyncpg.InvalidPasswordError):
        await each_host_in_turn(hosts.connect)(URL)
    assert [dsn for dsn, _ in hosts.tried] == [FIRST]


async def test_when_no_host_will_do_the_last_hosts_error_is_raised() -> None:
    hosts = _Hosts(
        {
            5441: ConnectionRefusedError(111, "refused"),
            5442: asyncpg.TargetServerAttributeNotMatched("a standby: not read-write"),
        }
    )

    with pytest.raises(asyncpg.TargetServerAttributeNotMatched):
        await each_host_in_turn(hosts.connect)(URL)
    assert [dsn for dsn, _ in hosts.tried] == [FIRST, SECOND]
