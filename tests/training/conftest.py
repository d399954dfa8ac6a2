"""The `work` fixture of the training tests."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.training._common import GOLDEN


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path holding the golden folder's files, as the current folder (Caffe opens the
    solver's paths relative to it)."""
    for p in GOLDEN.iterdir():
        if p.is_dir():
            shutil.copytree(p, tmp_path / p.name)
        else:
            shutil.copy(p, tmp_path / p.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path
