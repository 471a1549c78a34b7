"""docs/architecture.md's package graph is the code's: its tables list exactly who imports whom.

The graph is built by grimp, the library ``lint-imports`` checks the contracts with, from the import
statements (inside functions too) of the installed checkout.
"""

from __future__ import annotations

import re
from pathlib import Path

import grimp
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
PACKAGES = ("tfic", "tfic_cli", "tfic_demo", "trainer_svc", "inference_svc", "gateway")


def _table(first_header: str) -> dict[str, set[str]]:
    """Rows of the Markdown table whose first header is ``first_header``: first cell → the names in the second."""
    rows: dict[str, set[str]] = {}
    inside = False
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_header:
            inside = True
            continue
        if inside and not line.startswith("|"):
            break
        if inside and not set(cells[0]) <= {"-"}:
            rows[cells[0].strip("`")] = set(re.findall(r"`([\w.]+)`", cells[1]))
    assert rows, f"no table headed {first_header!r} in {DOC}"
    return rows


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def test_the_package_table_is_the_import_graph(graph: grimp.ImportGraph) -> None:
    actual = {
        a: {b for b in PACKAGES if b != a and graph.direct_import_exists(importer=a, imported=b, as_packages=True)}
        for a in PACKAGES
    }
    assert _table("package") == actual


def test_the_trainer_table_is_the_import_graph(graph: grimp.ImportGraph) -> None:
    documented = _table("sub-package")
    universe = [*documented, "tfic.v1"]
    actual = {
        a: {b for b in universe if b != a and graph.direct_import_exists(importer=a, imported=b, as_packages=True)}
        for a in documented
    }
    assert documented == actual
    found = {m for m in graph.find_children("trainer_svc") if graph.find_children(m)}
    assert found == set(documented), "every trainer sub-package has a row"
