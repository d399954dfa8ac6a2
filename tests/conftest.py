"""Fixtures that reach ../shared (the folder `shared` next to the repository root).

`oracle`: real Caffe (../shared/caffe-oracle) as `run_oracle` (tests/nets/oracle.py);
tests using it, or marked `@pytest.mark.oracle`, skip with the reason when it cannot run
(not root, or the oracle is absent).  `shared_models`: ../shared/models, the published nets.
CAFFE_FX_CHECK_PASSES=1: the pipeline checks its invariants after every pass.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.nets.oracle import MODELS, oracle_unavailable, run_oracle

# Every pipeline run in the tests (and the CLIs they start) checks each pass's invariants
# (caffe_fx/pipeline.py).
os.environ.setdefault("CAFFE_FX_CHECK_PASSES", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    why = oracle_unavailable()
    if why is None:
        return
    skip = pytest.mark.skip(reason=why)
    for item in items:
        if "oracle" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def oracle() -> Callable[..., tuple[dict, dict]]:
    why = oracle_unavailable()
    if why:
        pytest.skip(why)
    return run_oracle


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if not MODELS.is_dir():
        pytest.skip("needs ../shared/models")
    return MODELS
