"""Shared pytest setup. Area-specific session fixtures live in tests/fixtures_*.py, listed here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

pytest_plugins: list[str] = ["fixtures_llm", "fixtures_video", "fixtures_retrieval", "fixtures_train", "fixtures_generate",
                             "fixtures_sticker"]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: multi-minute end-to-end test (CI runs it; skip locally with -m 'not slow')")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real corpora); tests that need it skip when it is absent."""
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
