"""Data layers' top shapes (caffe_fx/data/top_shapes.py) against real Caffe's set-up.

Goldens: tools/make_data_goldens.py made small LMDB/LevelDB databases with Caffe's
convert_imageset, images, lists, HDF5 files and a window file, and recorded the blob
shapes real Caffe 1.0 gave each net (caffe-oracle forward; MemoryData through pycaffe's
Net()), and the line Caffe aborted with for each net it refuses.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import caffe_fx
import caffe_fx.pycaffe as caffe
from caffe_fx.errors import (
    DataSourceError,
    InputError,
    MissingDependencyError,
    NetDefinitionError,
    ShapeError,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "data"
SHAPES = json.loads((GOLDEN / "shapes.json").read_text())
ERRORS = json.loads((GOLDEN / "errors.json").read_text())
CASES = [(case, phase) for case, phases in SHAPES.items() for phase in phases]

# Each net Caffe refuses: what caffe_fx raises (Caffe's own line is in errors.json).
REFUSED = {
    "err_lmdb_missing": (DataSourceError, (r"layer 'data' \(Data\) reads its data from files: "
                         r"data_param.source = 'db/nope_lmdb' does not exist \(data_param."
                         r"backend = LMDB\); relative paths are read from the current folder, "
                         r".*, as Caffe reads them; give the tops' shapes with input_shapes=\{'data': \(2, C, H, W\), "
                         r"'label': \(2,\)\} instead")),
    "err_leveldb_missing": (DataSourceError, (r"data_param.source = 'db/nope_leveldb' does not "
                            r"exist \(data_param.backend = LEVELDB\)")),
    "err_crop_too_big": (ShapeError, (r"layer 'data' \(Data\): transform_param.crop_size = 11 "
                         r"is larger than the first record of the LMDB at data_param.source = "
                         r"'db/rgb_lmdb', 12 x 10 \(height x width\)")),
    "err_encoded_force_both": (NetDefinitionError, r"force_color and force_gray are both set"),
    "err_image_list_empty": (DataSourceError, (r"image_data_param.source = 'lists/empty.txt' "
                             r"is empty \(Caffe: File is empty\)")),
    "err_image_list_missing": (DataSourceError, (r"image_data_param.source = 'lists/nope.txt' "
                               r"cannot be opened \(No such file or directory\)")),
    "err_image_missing": (DataSourceError, (r"image_data_param.source = 'lists/missing.txt' "
                          r"lists first the image 'images/nope.png', which cannot be read")),
    "err_image_new_height_only": (NetDefinitionError, (r"layer 'data' \(ImageData\): image_data"
                                  r"_param.new_height = 5 and new_width = 0: Caffe requires "
                                  r"both set \(> 0\) or neither")),
    "err_image_one_top": (NetDefinitionError, (r"layer 'data' \(ImageData\): has 1 tops; "
                          r"allowed: exactly 2")),
    "err_hdf5_list_missing": (DataSourceError, (r"hdf5_data_param.source = 'hdf5/nope.txt' "
                              r"cannot be opened.*input_shapes=\{'data': \(2, \.\.\.\)\}")),
    "err_hdf5_no_dataset": (DataSourceError, (r"lists first 'hdf5/train0.h5', which has no "
                            r"dataset 'nope' \(each top reads the dataset named after it; it "
                            r"has: \['data', 'extra', 'label'\]\)")),
    "err_hdf5_rows": (ShapeError, (r"dataset 'label' of 'hdf5/rows.h5' has 4 rows but 'data' "
                      r"has 5")),
    "err_hdf5_transform": (NetDefinitionError, (r"layer 'data' \(HDF5Data\): transform_param "
                           r"is set, but HDF5Data does not transform data")),
    "err_memory_zero_channels": (NetDefinitionError, (r"memory_data_param batch_size = 5, "
                                 r"channels = 0, height = 3, width = 4; Caffe requires all "
                                 r"four specified and positive")),
    "err_window_no_crop": (NetDefinitionError, (r"layer 'data' \(WindowData\): transform_param."
                           r"crop_size = 0; WindowData crops .* requires it > 0")),
}


@pytest.fixture
def in_golden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the golden folder as the current folder: the nets' paths are relative,
    and opening a LevelDB writes into it."""
    here = tmp_path / "data"
    shutil.copytree(GOLDEN, here)
    monkeypatch.chdir(here)
    return here


def _shape(dims: list[int]) -> tuple[int, ...]:
    return tuple(dims)


@pytest.mark.parametrize("case,phase", CASES, ids=[f"{c}-{p}" for c, p in CASES])
def test_compile_gives_caffes_shapes(case: str, phase: str, in_golden: Path) -> None:
    gm = caffe_fx.compile(f"nets/{case}.prototxt", phase=phase)
    got = gm.meta["caffe"].blob_shapes
    want = {b: _shape(d) for b, d in SHAPES[case][phase].items()}
    assert {b: got[b] for b in want} == want


@pytest.mark.parametrize("phase", ["train", "test"])
def test_pycaffe_net_builds_train_val(phase: str, in_golden: Path) -> None:
    net = caffe.Net("nets/train_val.prototxt", caffe.TRAIN if phase == "train" else caffe.TEST)
    want = {b: _shape(d) for b, d in SHAPES["train_val"][phase].items()}
    assert {b: tuple(net.blobs[b].data.shape) for b in want} == want
    assert list(net.blobs) == list(want)


def test_error_cases_are_the_ones_caffe_refuses() -> None:
    assert set(REFUSED) == set(ERRORS)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_as_caffe_refuses(case: str, in_golden: Path) -> None:
    cls, match = REFUSED[case]
    with pytest.raises(cls, match=match):
        caffe_fx.compile(f"nets/{case}.prototxt", phase=ERRORS[case]["phase"])


def test_data_source_error_is_an_input_and_os_error() -> None:
    assert issubclass(DataSourceError, InputError) and issubclass(DataSourceError, OSError)


def test_input_shapes_win(in_golden: Path) -> None:
    # Given shapes are used as they are, and the source is not read.
    gm = caffe_fx.compile("nets/err_lmdb_missing.prototxt",
                          input_shapes={"data": (4, 1, 5, 5), "label": (4,)})
    assert gm.meta["caffe"].blob_shapes == {"data": (4, 1, 5, 5), "label": (4,)}
    gm = caffe_fx.compile("nets/train_val.prototxt", phase="train",
                          input_shapes={"data": (1, 3, 10, 10), "label": (1,)})
    assert gm.meta["caffe"].blob_shapes["conv"] == (1, 2, 8, 8)
    # A top not given is read (here, and failing, from a source that is absent).
    with pytest.raises(DataSourceError, match="db/nope_lmdb' does not exist"):
        caffe_fx.compile("nets/err_lmdb_missing.prototxt", input_shapes={"label": (4,)})


def test_pycaffe_reshape_after_data_layers(in_golden: Path) -> None:
    net = caffe.Net("nets/train_val.prototxt", caffe.TRAIN)
    net.blobs["data"].reshape(1, 3, 8, 8)
    net.blobs["label"].reshape(1)
    net.reshape()  # from the blobs' shapes: the sources are not read again
    assert net.blobs["conv"].data.shape == (1, 2, 6, 6)
    assert net.blobs["ip"].data.shape == (1, 3)


@pytest.mark.parametrize("module,package,net", [
    ("lmdb", "lmdb", "data_encoded_native"),
    ("plyvel", "plyvel", "data_leveldb_gray_resized"),
    ("PIL.Image", "pillow", "data_encoded_native"),
    ("PIL.Image", "pillow", "image_data"),
])
def test_missing_package_is_named(module: str, package: str, net: str, in_golden: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(MissingDependencyError, match=rf"needs the '{package}' package, which "
                       rf"is not installed \(pip install {package}, or pip install "
                       r"'caffe_fx\[data\]'\); or give the tops' shapes with input_shapes="):
        caffe_fx.compile(f"nets/{net}.prototxt", phase=next(iter(SHAPES[net])))


def test_absent_source_is_reported_before_a_missing_package(
        in_golden: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(DataSourceError, match="does not exist"):
        caffe_fx.compile("nets/err_lmdb_missing.prototxt")


def _data_net(tmp_path: Path, source: Path, backend: str = "LMDB") -> Path:
    net = tmp_path / "net.prototxt"
    net.write_text(f'layer {{ name: "d" type: "Data" top: "data" top: "label" data_param {{ '
                   f'source: "{source}" backend: {backend} batch_size: 2 }} }}\n')
    return net


def test_empty_and_foreign_lmdb(tmp_path: Path) -> None:
    import lmdb

    empty, foreign = tmp_path / "empty", tmp_path / "foreign"
    lmdb.open(str(empty), map_size=1 << 20).close()
    with lmdb.open(str(foreign), map_size=1 << 20) as env, env.begin(write=True) as txn:
        txn.put(b"0", b"\xff\xff\xff")
    with pytest.raises(DataSourceError, match=r"data_param.source = '.*empty' is an empty LMDB"):
        caffe_fx.compile(_data_net(tmp_path, empty))
    with pytest.raises(DataSourceError, match=r"holds a first record that is not a Datum"):
        caffe_fx.compile(_data_net(tmp_path, foreign))
    with pytest.raises(DataSourceError, match=r"cannot be opened as a LevelDB"):
        caffe_fx.compile(_data_net(tmp_path, foreign, "LEVELDB"))


def test_first_lmdb_record_only(tmp_path: Path) -> None:
    # Caffe shapes the tops from the first key's Datum; later records are not read.
    from caffe_fx.proto import caffe_pb2

    first = caffe_pb2.Datum(channels=2, height=3, width=4, data=bytes(24))
    import lmdb
    with lmdb.open(str(tmp_path / "db"), map_size=1 << 20) as env, \
            env.begin(write=True) as txn:
        txn.put(b"00000000_a", first.SerializeToString())
        txn.put(b"00000001_b", b"not a datum")
    gm = caffe_fx.compile(_data_net(tmp_path, tmp_path / "db"))
    assert gm.meta["caffe"].blob_shapes == {"data": (2, 2, 3, 4), "label": (2,)}
    zero = caffe_pb2.Datum(channels=0, height=3, width=4)
    with lmdb.open(str(tmp_path / "zero"), map_size=1 << 20) as env, \
            env.begin(write=True) as txn:
        txn.put(b"0", zero.SerializeToString())
    with pytest.raises(ShapeError, match=r"is a Datum with channels = 0; Caffe requires "
                                         r"channels > 0"):
        caffe_fx.compile(_data_net(tmp_path, tmp_path / "zero"))


def _hdf5_net(tmp_path: Path, tops: str = "data") -> Path:
    (tmp_path / "list.txt").write_text(f"  {tmp_path / 'a.h5'}\n{tmp_path / 'absent.h5'}\n")
    net = tmp_path / "net.prototxt"
    top = "".join(f' top: "{t}"' for t in tops.split())
    net.write_text(f'layer {{ name: "h" type: "HDF5Data"{top} hdf5_data_param {{ '
                   f'source: "{tmp_path / "list.txt"}" batch_size: 4 }} }}\n')
    return net


def test_hdf5_datasets_caffe_cannot_read(tmp_path: Path) -> None:
    import h5py

    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["data"] = np.zeros((3, 2), np.float16)
        f["names"] = np.array([b"a", b"b", b"c"])
        f["scalar"] = np.float32(1)
        f.create_group("grp")
    # only the first listed file is opened (the second does not exist)
    gm = caffe_fx.compile(_hdf5_net(tmp_path))
    assert gm.meta["caffe"].blob_shapes == {"data": (4, 2)}
    # Caffe: "Unsupported datatype class: H5T_STRING"
    with pytest.raises(ShapeError, match=r"layer 'h' \(HDF5Data\): dataset 'names' of '.*a.h5' "
                                         r"\(first file of hdf5_data_param.source\) holds "
                                         r"\|S1 values; Caffe reads float and integer"):
        caffe_fx.compile(_hdf5_net(tmp_path, "data names"))
    with pytest.raises(ShapeError, match=r"dataset 'scalar' of .* is a scalar"):
        caffe_fx.compile(_hdf5_net(tmp_path, "scalar"))
    with pytest.raises(DataSourceError, match=r"has no dataset 'grp'"):
        caffe_fx.compile(_hdf5_net(tmp_path, "grp"))


def _window_net(tmp_path: Path, text: str) -> Path:
    (tmp_path / "windows.txt").write_text(text)
    net = tmp_path / "net.prototxt"
    net.write_text(f'layer {{ name: "w" type: "WindowData" top: "data" top: "label" '
                   f'window_data_param {{ source: "{tmp_path / "windows.txt"}" batch_size: 2 }}'
                   f' transform_param {{ crop_size: 5 mean_value: 1 mean_value: 2 }} }}\n')
    return net


def test_window_files_caffe_cannot_read(tmp_path: Path) -> None:
    good = "# 0 a.png 2 10 10 1 1 0.9 0 0 4 4\n"
    gm = caffe_fx.compile(_window_net(tmp_path, good))  # the images are not opened
    assert gm.meta["caffe"].blob_shapes == {"data": (2, 2, 5, 5), "label": (2,)}
    with pytest.raises(NetDefinitionError, match=r"transform_param has 2 mean_value for 3 "
                                                 r"channels; Caffe requires 1 or one per"):
        caffe_fx.compile(_window_net(tmp_path, good.replace(" 2 10", " 3 10")))
    with pytest.raises(DataSourceError, match=r"has 'x' for the channels of image 0, not an "
                                              r"integer"):
        caffe_fx.compile(_window_net(tmp_path, "# 0 a.png x 10 10 0\n"))
    with pytest.raises(DataSourceError, match=r"has '%' where image 1's entry should start "
                                              r"with '#'"):
        caffe_fx.compile(_window_net(tmp_path, good + "% 1 b.png 3 4 4 0\n"))
    with pytest.raises(DataSourceError, match=r"ends inside the entry of image 0 \(before its "
                                              r"windows\)"):
        caffe_fx.compile(_window_net(tmp_path, "# 0 a.png 3 10 10 1 1 0.9\n"))
    with pytest.raises(DataSourceError, match=r"is empty \(Caffe: Window file is empty\)"):
        caffe_fx.compile(_window_net(tmp_path, " \n"))


def test_image_list_first_line_only(in_golden: Path) -> None:
    # The file name is what precedes the line's last space; later lines are not read.
    Path("lists/odd.txt").write_bytes(b"rgb 0.png 7\n\xff\xfe not a line\n")
    shutil.copy("images/rgb0.png", "images/rgb 0.png")
    net = Path("net.prototxt")
    net.write_text('layer { name: "d" type: "ImageData" top: "data" top: "label" '
                   'image_data_param { source: "lists/odd.txt" root_folder: "images/" '
                   'batch_size: 1 } }\n')
    assert caffe_fx.compile(net).meta["caffe"].blob_shapes["data"] == (1, 3, 12, 10)


def test_data_layer_takes_no_bottoms(in_golden: Path) -> None:
    Path("net.prototxt").write_text(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
        'layer { name: "d" type: "MemoryData" bottom: "x" top: "data" top: "label" '
        'memory_data_param { batch_size: 1 channels: 1 height: 1 width: 1 } }\n')
    with pytest.raises(NetDefinitionError, match=r"layer 'd' \(MemoryData\): has 1 bottoms; "
                                                 r"a data layer takes none"):
        caffe_fx.compile("net.prototxt")


def test_every_data_layer_without_shapes_is_named_in_one_error(tmp_path: Path) -> None:
    net = f"""
layer {{ name: "d1" type: "Data" top: "data" top: "label"
        data_param {{ source: "{tmp_path / 'absent_db'}" batch_size: 4 }} }}
layer {{ name: "d2" type: "HDF5Data" top: "d2" top: "l2"
        hdf5_data_param {{ source: "{tmp_path / 'absent_list.txt'}" batch_size: 2 }} }}
layer {{ name: "c" type: "Concat" bottom: "label" bottom: "l2" top: "c" }}
"""
    with pytest.raises(InputError) as e:
        caffe_fx.compile(net)
    message = str(e.value)
    assert "layer 'd1' (Data)" in message and "'data': (4, C, H, W)" in message
    assert "layer 'd2' (HDF5Data)" in message and "absent_list.txt" in message
