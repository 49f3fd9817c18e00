"""Fixtures shared across the suite: the tiny base model (built once into the user cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.modelspec import default_cache_dir


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """The model cache the suite shares between runs (LLMTWIN_TEST_CACHE overrides it)."""
    override = os.environ.get("LLMTWIN_TEST_CACHE")
    return Path(override) if override else default_cache_dir(os.environ)


@pytest.fixture(scope="session")
def tiny_model(model_cache: Path) -> Path:
    """The prepared ``tiny`` base: a random Llama with SmolLM2's tokenizer, exported and validated."""
    from edge.model.prepare import prepare_model

    return prepare_model("tiny", model_cache).path
