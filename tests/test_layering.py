"""Imports point one way: api -> ledger -> attestation; attestation does no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

ALLOWED = {"attestation": {"attestation"}, "ledger": {"ledger", "attestation"}, "api": {"api", "ledger", "attestation"}}
IO_MODULES = {"socket", "requests", "httpx", "urllib", "sqlalchemy", "web3", "subprocess", "sqlite3", "psycopg", "os", "pathlib"}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        ours = imports(path) & set(ALLOWED)
        assert ours <= ALLOWED[package], f"{path.relative_to(ROOT)} imports {sorted(ours - ALLOWED[package])}"


def test_attestation_is_io_free() -> None:
    for path in (ROOT / "attestation").rglob("*.py"):
        found = imports(path) & IO_MODULES
        assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}"
