"""The README's Map and docs/architecture.md agree with the tree: what they name exists, and every
top-level folder and workspace member is on the map."""

from __future__ import annotations

import re
import tomllib

from tests.support.prometheus import REPO

README = (REPO / "README.md").read_text()
ARCHITECTURE = (REPO / "docs" / "architecture.md").read_text()
_IGNORED_TOP = {".git", ".venv", ".tools", ".github", "node_modules", "__pycache__"}


def _map_rows() -> list[str]:
    section = README.split("## Map", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE)


def test_every_folder_on_the_map_exists() -> None:
    rows = _map_rows()
    assert rows
    assert [row for row in rows if not (REPO / row).exists()] == []


def test_every_top_level_folder_and_workspace_member_is_on_the_map() -> None:
    on_map = {row.rstrip("/") for row in _map_rows()}
    top = {path.name for path in REPO.iterdir() if path.is_dir() and path.name not in _IGNORED_TOP}
    top -= {name for name in top if name.startswith(".")}
    members = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    listed = {str(path.relative_to(REPO)) for pattern in members for path in REPO.glob(pattern) if path.is_dir()}
    covered = on_map | {row.split("/", 1)[0] for row in on_map}
    assert sorted(top - covered) == []
    assert sorted(listed - on_map) == []


def test_every_file_the_architecture_map_names_exists() -> None:
    named = set(re.findall(r"`((?:libs|services|clients|docs|tests)/[\w./-]+)`", ARCHITECTURE))
    assert len(named) > 10
    assert sorted(name for name in named if not (REPO / name).exists()) == []


def test_the_architecture_map_names_files_relative_to_the_service_that_exist() -> None:
    # Rows name a first file in full, then its siblings by their path inside the same package.
    missing = []
    for row in re.findall(r"^\| .+ \| (.+) \|$", ARCHITECTURE, re.MULTILINE):
        full = re.search(r"`((?:libs|services)/[\w-]+/src/\w+)/", row)
        if full is None:
            continue
        for relative in re.findall(r"`((?:adapters|domain|entrypoints)/\w+\.py|\w+\.py)`", row):
            if not (REPO / full.group(1) / relative).exists():
                missing.append(f"{full.group(1)}/{relative}")
    assert missing == []
