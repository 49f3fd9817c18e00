"""Issue 9 part 2: authentication and tenant identity against a running gateway process.

NULL and PLAIN clients, an unknown key, a wrong server key, non-ZMTP bytes, a key revoked while
connected, twins/rids/routing ids naming another tenant: all refused or ignored, and the well-behaved
tenant keeps being served (benchmarks/chaos/auth.py has the cases; the bench counts the same ones).
tests/gateway/test_service.py covers the in-process basics (unknown key, NULL, spoofed twin, revoked).
"""

from __future__ import annotations

import pytest

from benchmarks.chaos.arena import Arena, Case
from benchmarks.chaos.auth import auth_cases

pytestmark = pytest.mark.asyncio(loop_scope="module")
CASES = auth_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_case(arena: Arena, case: Case) -> None:
    result = await arena.check(case)
    assert result.survived, result


async def test_gateway_alive_and_tenants_restored(arena: Arena) -> None:
    assert arena.rig.alive()
    assert await arena.good_served(query=True)
    assert (arena.rig.tenants_dir / "home3.key").exists()  # the revocation case re-allowed it
