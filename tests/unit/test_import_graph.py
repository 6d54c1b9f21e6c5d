"""No package of the workspace has an import circle, at the granularity of modules.

The graph comes from grimp (the library import-linter is built on), reading the sources statically:
function-level and ``TYPE_CHECKING`` imports count too, since a circle hidden in a function is
still a circle a reader has to untangle.
"""

from __future__ import annotations

import grimp
import pytest

PACKAGES = (
    "stockzen_contracts",
    "stockzen_platform",
    "stockzen_gateway",
    "stockzen_inventory",
    "stockzen_sync_worker",
    "stockzen_client",
)


def import_circles(graph: grimp.ImportGraph, package: str) -> list[tuple[str, ...]]:
    """One chain per import that leads back to its importer, within ``package``."""
    circles = []
    for module in sorted(graph.find_children(package) | graph.find_descendants(package) | {package}):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                circles.append((module, *back))
    return circles


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_itself_in_a_circle(package: str) -> None:
    graph = grimp.build_graph(package, include_external_packages=False, cache_dir=None)
    assert import_circles(graph, package) == []


def test_the_check_finds_a_circle_when_there_is_one() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert ("pkg.a", "pkg.b", "pkg.c", "pkg.a") in import_circles(graph, "pkg")
