"""``make migrate`` and the cluster script read the services' database from a multi-host
``DATABASE_URL`` (a Patroni primary and its standby) as from a single-host one."""

from __future__ import annotations

import pytest

from stockzen_inventory.adapters.migrations import DatabaseTarget

MULTI_HOST = "postgresql://stockzen_app@127.0.0.1:5441,127.0.0.1:5442/stockzen?target_session_attrs=read-write"


def test_a_multi_host_url_names_the_database_and_the_application_role() -> None:
    assert DatabaseTarget.from_url(MULTI_HOST) == DatabaseTarget(name="stockzen", app_password=None)


def test_a_multi_host_url_carries_the_password_as_a_single_host_one_does() -> None:
    url = MULTI_HOST.replace("stockzen_app@", "stockzen_app:pa%24s@")
    assert DatabaseTarget.from_url(url).app_password == "pa$s"


def test_a_multi_host_url_for_another_role_is_refused() -> None:
    with pytest.raises(ValueError, match="application role"):
        DatabaseTarget.from_url(MULTI_HOST.replace("stockzen_app@", "postgres@"))
