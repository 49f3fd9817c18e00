"""Chaos fixtures: one gateway process per test module, with an attacker and a well-behaved tenant.

``arena`` is module-scoped (with a module-scoped event loop): the catalogue runs one test per case
against one running gateway, as the bench does, so a case that leaves the gateway damaged shows up in
the cases after it too, and the RSS bound covers the whole catalogue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from benchmarks.chaos.arena import Arena
from benchmarks.chaos.rig import GatewayRig
from shared.modelspec import find_prepared


@pytest.fixture(scope="session")
def chaos_cache(model_cache: Path, request: pytest.FixtureRequest) -> Path:
    """The model cache with the tiny model in it (prepared, which imports torch, only when missing)."""
    if find_prepared(model_cache, "tiny") is None:
        request.getfixturevalue("tiny_model")
    return model_cache


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def arena(tmp_path_factory: pytest.TempPathFactory, chaos_cache: Path) -> AsyncIterator[Arena]:
    async with GatewayRig(tmp_path_factory.mktemp("gateway"), chaos_cache) as gw, Arena(gw) as a:
        yield a
