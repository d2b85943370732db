"""ARCHITECTURE.md: imports go one way. Base floors never import the audit record or domain apps,
and keyward never imports broker/console/scim (except the root URLconf)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = ["core", "tenancy", "crypto", "jose", "net"]
RECORD = ["audit"]
DOMAIN = ["accounts", "idp", "agents", "providers", "policies", "approvals", "outbox", "siem", "orgs"]
OUTER = ["broker", "console", "scim"]
# The known exceptions, each with its reason; a new one fails here until it is argued for.
ALLOWED = {
    "keyward/core/management/commands/seed_demo.py imports keyward.idp.dev": "the demo seeds every app",
    "keyward/audit/api.py imports keyward.accounts.models": "a view names the role it needs",
    "keyward/audit/delivery.py imports keyward.siem.services": "the SIEM cursor pruning waits for, read lazily",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def forbidden_imports(package: str, forbidden: list[str]) -> list[str]:
    found = []
    for path in sorted((ROOT / "keyward" / package).rglob("*.py")):
        for module in imported_modules(path):
            if any(module == name or module.startswith(name + ".") for name in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    return [line for line in found if line not in ALLOWED]


@pytest.mark.parametrize("package", BASE)
def test_base_floors_import_neither_the_record_nor_the_domain(package):
    above = [f"keyward.{name}" for name in RECORD + DOMAIN] + OUTER
    assert forbidden_imports(package, above) == []


@pytest.mark.parametrize("package", RECORD)
def test_the_record_floor_imports_no_domain_app(package):
    assert forbidden_imports(package, [f"keyward.{name}" for name in DOMAIN] + OUTER) == []


def test_every_keyward_package_is_on_a_floor():
    packages = {path.parent.name for path in (ROOT / "keyward").glob("*/__init__.py")}
    assert packages == set(BASE + RECORD + DOMAIN)
