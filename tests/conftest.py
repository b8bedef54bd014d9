from __future__ import annotations

import pytest

from helpers import TINY, TINY_DCGAN


@pytest.fixture
def tiny_overrides() -> list[str]:
    """A DCGAN small enough to train a few steps in about a second on a CPU."""
    return [*TINY, *TINY_DCGAN]
