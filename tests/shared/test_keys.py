"""Tenant names and what a tenant may speak for: "." is the sub-twin separator, never part of a tenant."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.keys import generate_keypair, owns, scan_tenants_report


@pytest.mark.parametrize(
    ("tenant", "twin", "allowed"),
    [
        ("home1", "home1", True),
        ("home1", "home1.kitchen", True),
        ("home1", "home10", False),
        ("home1", "home1-x", False),
        ("home1", "home2.kitchen", False),
        ("home1", "", False),
    ],
)
def test_owns(tenant: str, twin: str, allowed: bool) -> None:
    assert owns(tenant, twin) is allowed


def test_a_dotted_tenant_name_is_refused_at_creation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must match"):
        generate_keypair(tmp_path, "home1.x")


def test_a_dotted_tenant_key_file_is_not_allowed_in(tmp_path: Path) -> None:
    made = generate_keypair(tmp_path / "src", "homex")
    keys = tmp_path / "tenants"
    keys.mkdir()
    shutil.copy(made.public, keys / "home1.x.key")  # would be a twin of tenant home1
    shutil.copy(made.public, keys / "home2.key")
    table, problems = scan_tenants_report(keys)
    assert sorted(table.values()) == ["home2"]
    assert any("home1.x.key" in p for p in problems)
