"""Data-layer batches (caffe_fx/data/feed.py) against real Caffe's, element for element.

Goldens: tools/make_data_feed_goldens.py ran real pycaffe (caffe.set_random_seed,
set_solver_count/rank, Net(), several forward()) on each net of tests/golden/data_feed/
nets over the sources of tests/golden/data (convert_imageset's LMDB/LevelDB, raw and
encoded), a convert_mnist_data LMDB and a compute_image_mean binaryproto, and recorded
every data-layer top after each forward, across epoch boundaries; and the line Caffe
aborted with for each net it refuses.  The sources are copied to a temporary folder
first: opening a LevelDB writes into it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from caffe_fx.data import open_feed
from caffe_fx.errors import (
    DataSourceError,
    InputArrayError,
    InputError,
    NetDefinitionError,
    ShapeError,
)
from caffe_fx.proto import caffe_pb2

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = json.loads((GOLDEN / "data_feed" / "cases.json").read_text())
ERRORS = json.loads((GOLDEN / "data_feed" / "errors.json").read_text())
PHASES = {"train": caffe_pb2.TRAIN, "test": caffe_pb2.TEST}


@pytest.fixture(scope="module")
def batches() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "data_feed" / "batches.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture
def golden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("data", "data_feed"):
        shutil.copytree(GOLDEN / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _net(text: str) -> caffe_pb2.NetParameter:
    return text_format.Parse(text, caffe_pb2.NetParameter())


def _case(case: str) -> caffe_pb2.NetParameter:
    return _net((GOLDEN / "data_feed" / "nets" / f"{case}.prototxt").read_text())


def _feed_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "caffe_fx-data-feed"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_batches_equal_caffe(golden: Path, batches: dict, case: str) -> None:
    c = CASES[case]
    with open_feed(_case(case), phase=PHASES[c["phase"]], where=f"{case}.prototxt",
                   seed=c["seed"], rank=c["rank"], world_size=c["solver_count"]) as feed:
        assert sorted(feed.tops) == c["tops"]
        for i in range(c["forwards"]):
            got = feed.next()
            for top in c["tops"]:
                want = batches[f"{case}/{i}/{top}"]
                assert got[top].dtype == np.float32
                assert got[top].shape == want.shape == feed.shapes[top], (i, top)
                np.testing.assert_array_equal(got[top], want, err_msg=f"forward {i}, {top}")
    assert not _feed_threads()


def test_seed_changes_the_train_stream(golden: Path, batches: dict) -> None:
    case = "lmdb_train_crop_mirror_mean_file"
    with open_feed(_case(case), phase=caffe_pb2.TRAIN, where="n", seed=1702) as feed:
        runs = [feed.next()["data"] for _ in range(4)]
    assert any(not np.array_equal(r, batches[f"{case}/{i}/data"]) for i, r in enumerate(runs))


def test_ranks_partition_the_records(golden: Path) -> None:
    net = _case("lmdb_rank1_of_2")
    seen = []
    for rank in (0, 1):
        with open_feed(net, phase=caffe_pb2.TRAIN, where="n", rank=rank, world_size=2) as f:
            seen.append(f.next()["label"])
    # 3 records, offsets counted across the wrap: rank 0 keeps offsets 0, 2 (records 0, 2),
    # rank 1 offsets 1, 3 (records 1, 0)
    assert seen[0].tolist() == [0, 2] and seen[1].tolist() == [1, 0]


# -- errors ------------------------------------------------------------------------------

REFUSED = {
    "err_mean_file_shape": (ShapeError, (r"layer 'data' \(Data\): transform_param.mean_file = "
                            r"'data_feed/mean.binaryproto' holds a 3 x 12 x 10 mean but the "
                            r"record '.*' of data_param.source = 'data/db/gray_small_leveldb' "
                            r"is 1 x 6 x 5; Caffe requires the same channels, height and width")),
    "err_mean_file_missing": (DataSourceError, (r"transform_param.mean_file = 'data_feed/nope."
                              r"binaryproto' cannot be opened \(No such file or directory\)")),
    "err_mean_value_count": (NetDefinitionError, (r"transform_param has 2 mean_value for the "
                             r"record .* with 3 channels; Caffe requires 1 or one per channel")),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_like_caffe(golden: Path, case: str) -> None:
    assert ERRORS[case]["caffe"]  # Caffe aborted on this net too
    cls, match = REFUSED[case]
    with pytest.raises(cls, match=match):
        open_feed(_case(case), phase=caffe_pb2.TEST, where="n.prototxt")
    assert not _feed_threads()


def test_setup_errors_name_the_source(golden: Path) -> None:
    missing = _net('layer { name: "d" type: "Data" top: "data" data_param { source: '
                   '"data/db/nope" backend: LMDB batch_size: 1 } }')
    with pytest.raises(DataSourceError, match=r"n.prototxt: layer 'd' \(Data\) reads its data "
                       r"from files: data_param.source = 'data/db/nope' does not exist"):
        open_feed(missing, phase=caffe_pb2.TEST, where="n.prototxt")
    empty = _net('layer { name: "d" type: "ImageData" top: "data" top: "label" '
                 'image_data_param { source: "data/lists/empty.txt" batch_size: 1 } }')
    with pytest.raises(DataSourceError, match=r"'data/lists/empty.txt' is empty"):
        open_feed(empty, phase=caffe_pb2.TEST, where="n.prototxt")
    both = _net('layer { name: "d" type: "Data" top: "data" data_param { source: '
                '"data/db/rgb_lmdb" backend: LMDB batch_size: 1 } transform_param { '
                'mean_file: "data_feed/mean.binaryproto" mean_value: 1 } }')
    with pytest.raises(NetDefinitionError, match=r"sets both mean_file and mean_value"):
        open_feed(both, phase=caffe_pb2.TEST, where="n.prototxt")
    crop = _net('layer { name: "d" type: "Data" top: "data" data_param { source: '
                '"data/db/rgb_lmdb" backend: LMDB batch_size: 1 } transform_param { '
                'crop_size: 11 } }')
    with pytest.raises(ShapeError, match=r"crop_size = 11 is larger than"):
        open_feed(crop, phase=caffe_pb2.TRAIN, where="n.prototxt")
    with pytest.raises(InputError, match=r"rank=2, world_size=2"):
        open_feed(crop, phase=caffe_pb2.TRAIN, where="n.prototxt", rank=2, world_size=2)


def test_worker_error_surfaces_in_next(golden: Path) -> None:
    Path("list.txt").write_text("rgb0.png 0\nnope.png 1\n")
    net = _net('layer { name: "d" type: "ImageData" top: "data" top: "label" '
               'image_data_param { source: "list.txt" root_folder: "data/images/" '
               'batch_size: 1 } }')
    feed = open_feed(net, phase=caffe_pb2.TEST, where="n.prototxt")
    assert feed is not None
    assert feed.next()["label"].tolist() == [0.0]
    for _ in range(2):  # and again: a failed feed stays failed
        with pytest.raises(DataSourceError, match=r"layer 'd' \(ImageData\): image_data_param"
                           r".source = 'list.txt' lists the image 'data/images/nope.png', "
                           r"which cannot be read"):
            feed.next()
    feed.close()
    assert not _feed_threads()
    with pytest.raises(InputError, match="closed"):
        feed.next()


def test_records_of_different_shapes_in_a_batch(golden: Path) -> None:
    lmdb = pytest.importorskip("lmdb")
    env = lmdb.open("mixed_lmdb", map_size=1 << 20)
    with env.begin(write=True) as txn:
        for i, (h, w) in enumerate(((4, 4), (5, 4))):
            d = caffe_pb2.Datum(channels=1, height=h, width=w, data=bytes(h * w), label=i)
            txn.put(f"{i:08d}".encode(), d.SerializeToString())
    env.close()
    net = _net('layer { name: "d" type: "Data" top: "data" data_param { source: '
               '"mixed_lmdb" backend: LMDB batch_size: 2 } }')
    with open_feed(net, phase=caffe_pb2.TEST, where="n.prototxt") as feed, \
            pytest.raises(ShapeError, match=r"the record '00000001' of data_param.source = "
                           r"'mixed_lmdb' transforms to 1 x 5 x 4 but the batch's first "
                           r"record to 1 x 4 x 4"):
        feed.next()


def test_hdf5_files_of_different_row_shapes(golden: Path) -> None:
    h5py = pytest.importorskip("h5py")
    for name, cols in (("a", 3), ("b", 4)):
        with h5py.File(f"{name}.h5", "w") as f:
            f["data"] = np.zeros((2, cols), np.float32)
    Path("h5.txt").write_text("a.h5\nb.h5\n")
    net = _net('layer { name: "d" type: "HDF5Data" top: "data" hdf5_data_param { '
               'source: "h5.txt" batch_size: 3 } }')
    with open_feed(net, phase=caffe_pb2.TEST, where="n.prototxt") as feed, \
            pytest.raises(ShapeError, match=r"dataset 'data' of the HDF5 file 'b.h5' .* has "
                           r"rows of shape \(4,\), but the first file's give the top \(3, 3\)"):
        feed.next()


def test_memory_data(golden: Path) -> None:
    net = _net('layer { name: "m" type: "MemoryData" top: "data" top: "label" '
               'memory_data_param { batch_size: 2 channels: 1 height: 2 width: 1 } }')
    with open_feed(net, phase=caffe_pb2.TEST, where="n.prototxt") as feed:
        assert feed.shapes == {"data": (2, 1, 2, 1), "label": (2,)}
        with pytest.raises(InputError, match="MemoryDataLayer needs to be initialized"):
            feed.next()
        with pytest.raises(InputArrayError, match=r"allowed: \(n, 1, 2, 1\)"):
            feed.set_memory("m", np.zeros((4, 2, 2, 1)), np.zeros(4))
        data = np.arange(8, dtype=np.float32).reshape(4, 1, 2, 1)
        feed.set_memory("m", data, np.array([5, 6, 7, 8]))
        got = [feed.next() for _ in range(3)]
    np.testing.assert_array_equal(got[0]["data"], data[:2])
    np.testing.assert_array_equal(got[1]["label"], [7, 8])
    np.testing.assert_array_equal(got[2]["data"], data[:2])  # wraps, as Forward does


def test_no_data_layers(golden: Path) -> None:
    assert open_feed(_net('layer { name: "i" type: "Input" top: "x" input_param { shape { '
                          'dim: 1 } } }'), phase=caffe_pb2.TEST, where="n") is None


def test_window_data_needs_both_kinds_of_window(golden: Path) -> None:
    text = (GOLDEN / "data_feed" / "nets" / "window_warp.prototxt").read_text()
    net = _net(text.replace("bg_threshold: 0.5", "bg_threshold: 0.05"))
    with pytest.raises(InputError, match=r"layer 'data' \(WindowData\): window_data_param."
                       r"source = 'data/windows.txt' has no background windows"):
        open_feed(net, phase=caffe_pb2.TRAIN, where="n")


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("case", ["lmdb_train_crop_mirror_mean_file",
                                  "image_train_shuffle_crop_mirror", "window_warp"])
def test_other_seeds_equal_live_caffe(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeds the goldens do not hold: real pycaffe runs now, in the reference chroot."""
    from tools import make_data_feed_goldens as gen
    from tools._chroot import chroot_workdir

    root = Path("/opt/caffe-ref")
    if not (root / "usr/bin/caffe").exists():
        pytest.skip("needs the reference Caffe chroot at /opt/caffe-ref")
    c, seed = CASES[case], 424242
    with chroot_workdir(root, "data_feed_live_") as (work, inside):
        for name in ("data", "data_feed"):
            shutil.copytree(GOLDEN / name, work / name)
        (work / "record.py").write_text(gen.RECORD)
        proc = gen._python(str(root), [f"{inside}/record.py", inside, case, c["phase"],
                                       str(seed), "1", "0", "3", f"{inside}/out.npz"])
        assert proc.returncode == 0, proc.stderr[-2000:]
        with np.load(work / "out.npz") as f:
            want = {k: f[k] for k in f.files}
        monkeypatch.chdir(work)
        with open_feed(_case(case), phase=PHASES[c["phase"]], where=case, seed=seed) as feed:
            for i in range(3):
                got = feed.next()
                for top in c["tops"]:
                    np.testing.assert_array_equal(got[top], want[f"{case}/{i}/{top}"])


def test_restart_is_logged_as_caffe_logs_it(golden: Path, caplog: pytest.LogCaptureFixture
                                            ) -> None:
    with caplog.at_level("INFO", logger="caffe_fx.data"), \
            open_feed(_case("lmdb_one_top"), phase=caffe_pb2.TEST, where="n") as feed:
        feed.next()
        feed.next()  # 3 records in batches of 2: the cursor wrapped
    assert "Restarting data prefetching from start." in caplog.messages


_EXIT_WITH_A_READER = """
import sys
from google.protobuf import text_format
from caffe_fx.data import open_feed
from caffe_fx.proto import caffe_pb2
net = text_format.Parse('layer { name: "d" type: "HDF5Data" top: "data" top: "label" '
                        'hdf5_data_param { source: "h5.txt" batch_size: 3 } }',
                        caffe_pb2.NetParameter())
feed = open_feed(net, phase=caffe_pb2.TEST, where="n.prototxt")
for _ in range(5):
    batch = feed.next()
print(batch["label"].tolist())
"""  # and exits with the reader still running: nothing closes the feed


def test_the_interpreter_exits_cleanly_with_a_reader_running(tmp_path: Path) -> None:
    """A daemon reader thread still inside h5py when Python finalized froze holding
    h5py's lock: the exit hung or aborted (double free, segfault) about one run in
    three; the atexit hook now stops it first."""
    h5py = pytest.importorskip("h5py")
    for name, first in (("a", 0), ("b", 4)):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f["data"] = np.arange(first * 2, first * 2 + 8, dtype=np.float32).reshape(4, 2)
            f["label"] = np.arange(first, first + 4, dtype=np.float32)
    (tmp_path / "h5.txt").write_text("a.h5\nb.h5\n")
    (tmp_path / "run.py").write_text(_EXIT_WITH_A_READER)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    for _ in range(6):
        run = subprocess.run([sys.executable, "run.py"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
        assert (run.returncode, run.stderr) == (0, "")
        assert len(json.loads(run.stdout)) == 3  # the script got its batches
