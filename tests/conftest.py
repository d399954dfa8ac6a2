"""Fixtures that reach ../shared (the folder `shared` next to the repository root).

`oracle`: real Caffe (../shared/caffe-oracle) as `run_oracle` (tests/nets/oracle.py);
tests using it, or marked `@pytest.mark.oracle`, skip with the reason when it cannot run
(not root, or the oracle is absent).  `shared_models`: ../shared/models, the published nets.
Every test starts without the `caffe` alias unless an earlier one of its own module set it
up on purpose: one that trusts a Python layer whose module does `import caffe` installs it
for the process (lowering/layers/python.py), and it is taken away again after the test.
CAFFE_FX_CHECK_PASSES=1: the pipeline checks its invariants after every pass.
Tests marked `published` (the long runs over ../shared/models beyond what the default
suite covers: a net whose layers another net of the default run already checks) run only
with CAFFE_FX_PUBLISHED=1, so that the README's test command stays within its time.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.nets.oracle import MODELS, oracle_unavailable, run_oracle

# Every pipeline run in the tests (and the CLIs they start) checks each pass's invariants
# (caffe_fx/pipeline.py).
os.environ.setdefault("CAFFE_FX_CHECK_PASSES", "1")


@pytest.fixture(autouse=True)
def _oracle_fork_restored() -> Iterator[None]:
    """CAFFE_ORACLE_FORK as it was before each test: a test that ran a fork's oracle must
    not turn the later BVLC oracle runs into that fork's."""
    before = os.environ.get("CAFFE_ORACLE_FORK")
    yield
    if before is None:
        os.environ.pop("CAFFE_ORACLE_FORK", None)
    else:
        os.environ["CAFFE_ORACLE_FORK"] = before


@pytest.fixture(autouse=True)
def _no_leftover_caffe_alias() -> Iterator[None]:
    before = {n for n in sys.modules if n == "caffe" or n.startswith("caffe.")}
    yield
    if "caffe" in before or sys.modules.get("caffe") is not sys.modules.get("caffe_fx.pycaffe"):
        return  # a real caffe, or an alias this test found already there
    from caffe_fx.pycaffe import shim

    for name in [n for n in sys.modules if n == "caffe" or n.startswith("caffe.")]:
        if name not in before:
            del sys.modules[name]
    if shim._FINDER in sys.meta_path:  # noqa: SLF001  (the alias's own finder)
        sys.meta_path.remove(shim._FINDER)  # noqa: SLF001


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CAFFE_FX_PUBLISHED") != "1":
        skip_long = pytest.mark.skip(reason="a long run over ../shared/models: set "
                                     "CAFFE_FX_PUBLISHED=1")
        for item in items:
            if "published" in item.keywords:
                item.add_marker(skip_long)
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
