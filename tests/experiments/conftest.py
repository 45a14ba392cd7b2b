"""Experiments tests run torch on one thread: tiny models are as fast, exact comparisons need a fixed
thread count, and a busy 2-core box does not stall thread barriers."""

from __future__ import annotations

import pytest

from weightlake._util import torch_threads


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with torch_threads(1):
        yield
