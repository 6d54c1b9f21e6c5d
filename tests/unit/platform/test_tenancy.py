"""The tenancy map names real files, and the setting it names is the one the policies read."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from stockzen_platform import tenancy

ROOT = Path(__file__).resolve().parents[3]


def _source_files() -> dict[str, Path]:
    """Every module and migration of the workspace by its path below ``src/``."""
    found = {}
    for path in [*ROOT.glob("libs/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.*")]:
        relative = path.relative_to(next(p for p in path.parents if p.name == "src"))
        found[relative.as_posix()] = path
    return found


def test_every_file_the_tenancy_map_names_exists() -> None:
    assert tenancy.__doc__ is not None
    named = set(re.findall(r"``(stockzen_\w+/[\w/]+\.py)``", tenancy.__doc__))
    assert len(named) >= 4
    files = _source_files()
    assert sorted(name for name in named if name not in files) == []


def test_the_policies_read_the_setting_tenant_transactions_set() -> None:
    migrations = sorted(ROOT.glob("services/inventory/src/stockzen_inventory/migrations/*.sql"))
    sql = "\n".join(path.read_text() for path in migrations)
    assert f"current_setting('{tenancy.TENANT_SETTING}', true)" in sql
    assert "tenant_id = app_current_tenant()" in sql


def test_a_caller_owns_only_its_own_tenant() -> None:
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    assert tenancy.belongs_to_caller(mine, mine)
    assert not tenancy.belongs_to_caller(theirs, mine)
