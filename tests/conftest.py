from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHELFOPS_SHARED_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("SHELFOPS_PSEUDONYM_KEY", "test-key-0123456789abcdef")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA
