"""db::Cursor: the records of an LMDB or LevelDB in key order, wrapping at the end.

Shared by the data layers' shapes (top_shapes.py reads the first record) and their
batches (feed.py).  Mirrors src/caffe/util/db_lmdb.cpp and db_leveldb.cpp: LMDB opened
MDB_RDONLY (without a lock file, nothing is written to its folder); LevelDB, which has
no read-only open, may recover its log and takes its LOCK file, as Caffe's does.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..proto import caffe_pb2


class Cursor:
    """Opens `source` with `backend` (DataParameter.DB); `fail(problem, cause)` makes the
    caller's error for a database that cannot be opened or read.  valid is False for an
    empty database; next() past the last record returns False and starts again."""

    def __init__(self, source: str, backend: int,
                 fail: Callable[[str, Exception], Exception]) -> None:
        self.lmdb = backend == caffe_pb2.DataParameter.LMDB
        self._fail = fail
        if self.lmdb:
            import lmdb
            self._errors: tuple[type[Exception], ...] = (lmdb.Error,)
            try:
                self._env = lmdb.open(source, readonly=True, lock=False, readahead=False)
            except lmdb.Error as e:
                raise fail(f"cannot be opened as an LMDB ({e})", e) from e
            self._txn = self._env.begin(buffers=False)
            self._cur = self._txn.cursor()
        else:
            import plyvel
            self._errors = (plyvel.Error,)
            try:
                self._db = plyvel.DB(source, create_if_missing=False)
            except plyvel.Error as e:
                raise fail(f"cannot be opened as a LevelDB ({e})", e) from e
        self.valid = self._first()

    def _first(self) -> bool:
        try:
            if self.lmdb:
                return bool(self._cur.first())
            self._it: Any = self._db.iterator()
            self._item: tuple[bytes, bytes] | None = next(self._it, None)
            return self._item is not None
        except self._errors as e:
            raise self._fail(f"cannot be read ({e})", e) from e

    def item(self) -> tuple[bytes, bytes]:
        """The current record: (key, value)."""
        if self.lmdb:
            return bytes(self._cur.key()), bytes(self._cur.value())
        assert self._item is not None
        return self._item

    def next(self) -> bool:
        """Moves on; past the last record back to the first (returns False then)."""
        try:
            if self.lmdb:
                moved = bool(self._cur.next())
            else:
                self._item = next(self._it, None)
                moved = self._item is not None
        except self._errors as e:
            raise self._fail(f"cannot be read ({e})", e) from e
        if not moved:
            self.valid = self._first()
        return moved

    def close(self) -> None:
        if self.lmdb:
            self._txn.abort()
            self._env.close()
        else:
            self._db.close()
