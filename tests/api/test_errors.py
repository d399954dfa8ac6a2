"""Bad input gets one clear caffe_fx.errors exception naming file, layer, field and value."""

import numpy as np
import pytest

import caffe_fx
from caffe_fx.errors import (CaffeFxError, IgnoredFieldWarning, InputError, NetDefinitionError,
                             NetProblemsError,
                             ProtoParseError, ShapeError, UnsupportedFieldError,
                             UnsupportedLayerError, WeightsError)

INPUT = ('layer { name: "data" type: "Input" top: "data" '
         'input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n')
CONV = ('layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
        'convolution_param { num_output: 4 kernel_size: 3 } }\n')


def test_malformed_prototxt_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text(INPUT + 'layer {\n  name: "x"\n  tpye: "ReLU"\n}\n')
    with pytest.raises(ProtoParseError, match=r"bad\.prototxt:4:3: .*tpye"):
        caffe_fx.compile(path)


def test_missing_prototxt_file():
    with pytest.raises(ProtoParseError, match=r"nope\.prototxt: no such prototxt file"):
        caffe_fx.compile("nope.prototxt")


def test_binary_file_given_as_prototxt(tmp_path):
    path = tmp_path / "w.caffemodel"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(ProtoParseError, match=r"w\.caffemodel"):
        caffe_fx.compile(path)


def test_every_unsupported_layer_reported_at_once():
    net = INPUT + (
        'layer { name: "roi" type: "IPlugin" bottom: "data" top: "roi" }\n'
        'layer { name: "up" type: "TensorRTOnly" bottom: "roi" top: "up" }\n'
        'layer { name: "roi2" type: "IPlugin" bottom: "up" top: "roi2" }\n')
    with pytest.raises(UnsupportedLayerError) as e:
        caffe_fx.compile(net)
    msg = str(e.value)
    assert "Unknown layer types IPlugin, TensorRTOnly in 3 layer(s)" in msg
    assert "caffe_fx.register_layer(TYPE, impl)" in msg
    for name in ("roi", "up", "roi2"):
        assert f"layer '{name}'" in msg
    assert isinstance(e.value, NotImplementedError) and isinstance(e.value, CaffeFxError)


def test_dangling_bottom():
    net = INPUT + 'layer { name: "r" type: "ReLU" bottom: "nothing" top: "r" }\n'
    with pytest.raises(NetDefinitionError,
                       match=r"layer 'r' \(ReLU\): bottom\[0\] = 'nothing' is not produced"):
        caffe_fx.compile(net)


def test_top_produced_twice():
    net = INPUT + CONV + ('layer { name: "conv2" type: "Convolution" bottom: "data" '
                          'top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }\n')
    with pytest.raises(NetDefinitionError,
                       match=r"layer 'conv2' \(Convolution\): top\[0\] = 'conv1' is already"):
        caffe_fx.compile(net)


def test_impossible_shape():
    net = INPUT + CONV.replace("kernel_size: 3", "kernel_size: 11")
    with pytest.raises(ShapeError, match=r"layer 'conv1' \(Convolution\) cannot run on bottoms "
                                         r"of shape \[\[1, 3, 8, 8\]\]"):
        caffe_fx.compile(net)


def test_unsupported_field_value():
    net = INPUT + ('layer { name: "pool5" type: "Pooling" bottom: "data" top: "pool5" '
                   'pooling_param { pool: STOCHASTIC kernel_size: 2 } }\n')
    with pytest.raises(UnsupportedFieldError,
                       match=r"layer 'pool5' \(Pooling\): pooling_param.pool = STOCHASTIC is "
                             r"not supported; supported: MAX, AVE"):
        caffe_fx.compile(net)


def test_field_meaningless_for_the_type_is_ignored_as_caffe_ignores_it_and_said():
    net = INPUT + ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" '
                   'pooling_param { pool: AVE } }\n')
    with pytest.warns(IgnoredFieldWarning, match=r"layer 'r' \(ReLU\): pooling_param "
                                                 r"\(it reads: relu_param\)"):
        caffe_fx.compile(net)


def test_truncated_caffemodel(tmp_path):
    from caffe_fx.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    layer = net.layer.add(name="conv1", type="Convolution")
    blob = layer.blobs.add()
    blob.shape.dim.extend([4, 3, 3, 3])
    blob.data.extend(np.zeros(108, np.float32).tolist())
    data = net.SerializeToString()
    path = tmp_path / "cut.caffemodel"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut\.caffemodel: not a valid caffemodel"):
        caffe_fx.compile(INPUT + CONV, path)


def test_weight_shape_mismatch_names_layer_blob_and_shapes():
    weights = {"conv1": [np.zeros((4, 3, 5, 5), np.float32), np.zeros(4, np.float32)]}
    with pytest.raises(WeightsError, match=r"layer 'conv1' \(Convolution\): blob 0 \(weight\) "
                                           r"has shape \[4, 3, 5, 5\] in the weights but "
                                           r"\[4, 3, 3, 3\]"):
        caffe_fx.compile(INPUT + CONV, weights)


def test_weight_blob_count_mismatch():
    weights = {"conv1": [np.zeros((4, 3, 3, 3), np.float32)]}
    with pytest.raises(WeightsError, match=r"hold 1 blobs, the layer has 2"):
        caffe_fx.compile(INPUT + CONV, weights)


def test_weights_for_layers_not_in_the_net_are_skipped():
    weights = {"conv1": [np.ones((4, 3, 3, 3), np.float32), np.zeros(4, np.float32)],
               "training_only": [np.zeros(3, np.float32)]}
    gm = caffe_fx.compile(INPUT + CONV, weights)
    assert float(gm.conv1.weight.detach().sum()) == 108.0


def test_legacy_4d_inner_product_weights_accepted():
    """Old caffemodels store InnerProduct weights as (1, 1, N, K); Caffe's ShapeEquals
    accepts them right-aligned (the V1 binary LeNet/CIFAR nets in tests/nets use them)."""
    from caffe_fx.binding import shape_equals as _shape_equals
    from caffe_fx.frontend.read import StoredBlob
    legacy = np.zeros((1, 1, 2, 192), np.float32)
    assert _shape_equals(StoredBlob(legacy, legacy=True), (2, 192))
    assert not _shape_equals(StoredBlob(legacy, legacy=False), (2, 192))


def test_unknown_output_blob():
    with pytest.raises(InputError, match=r"outputs=\['fc9'\] are not blobs of the net"):
        caffe_fx.compile(INPUT + CONV, outputs=["fc9"])


def test_bad_phase():
    with pytest.raises(InputError, match=r"phase = 'deploy' is not a phase"):
        caffe_fx.compile(INPUT + CONV, phase="deploy")


def test_a_string_for_a_list_of_names_is_refused_not_read_as_its_letters():
    """stages="deploy" had kept a layer included in stage "d" and dropped one in "deploy"."""
    with pytest.raises(InputError, match=r"stages='deploy' is one string; allowed: a list "
                       r"of names, e.g. stages=\['deploy'\]"):
        caffe_fx.compile(INPUT + CONV, stages="deploy")
    with pytest.raises(InputError, match=r"outputs='conv1' is one string"):
        caffe_fx.compile(INPUT + CONV, outputs="conv1")
    gm = caffe_fx.compile(INPUT + CONV, stages=("deploy",), outputs=["conv1"])
    assert gm.meta["caffe"].outputs == ["conv1"]


def test_arguments_of_the_wrong_kind_all_reported_at_once():
    with pytest.raises(InputError) as info:
        caffe_fx.compile(b"layer {}", 5, level="a", stages=[1],
                         input_shapes={"data": "1,3,8,8"})
    message = str(info.value)
    for part in ("prototxt of type bytes", "weights of type int", "level='a'",
                 "stages=[1]; allowed: a list of strings",
                 "input_shapes['data'] = '1,3,8,8'; allowed: a blob name and a sequence"):
        assert part in message, part
    with pytest.raises(InputError, match=r"level=1099511627776; allowed: an int of 32 bits"):
        caffe_fx.compile(INPUT + CONV, level=2 ** 40)
    with pytest.raises(InputError, match=r"input_shapes of type list; allowed: a mapping"):
        caffe_fx.compile(INPUT + CONV, input_shapes=[1, 3, 8, 8])
    # what a shape usually is: a tuple, torch.Size, a NumPy array of ints
    for shape in ((1, 3, 8, 8), np.array([1, 3, 8, 8]), np.zeros((1, 3, 8, 8)).shape):
        gm = caffe_fx.compile(INPUT + CONV, input_shapes={"data": shape})
        assert tuple(gm.meta["caffe"].blob_shapes["data"]) == (1, 3, 8, 8)


def test_weights_mapping_of_the_wrong_kind():
    with pytest.raises(WeightsError, match=r"weights=\{...\}: 'conv1': int, 'x': an array of "
                       r"complex64; allowed: a layer name mapped to a list of arrays"):
        caffe_fx.compile(INPUT + CONV, {"conv1": 1, "x": [np.zeros(2, np.complex64)]})


def test_data_layer_needs_input_shapes():
    net = ('layer { name: "mnist" type: "Data" top: "data" top: "label" '
           'data_param { source: "x" batch_size: 4 } }\n') + CONV
    with pytest.raises(InputError, match=r"layer 'mnist' \(Data\).*input_shapes="):
        caffe_fx.compile(net)
    gm = caffe_fx.compile(net, input_shapes={"data": (4, 3, 8, 8), "label": (4,)})
    assert [n.name for n in gm.graph.nodes if n.op == "placeholder"] == ["data", "label"]


def test_corrupt_hdf5(tmp_path):
    import h5py
    path = tmp_path / "w.caffemodel.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("other", data=np.zeros(3))
    with pytest.raises(WeightsError, match=r"without the /data group"):
        caffe_fx.compile(INPUT + CONV, path)


# Every problem of a net at once: a user fixes them in one round, not one per compile.

def test_every_dangling_bottom_and_unknown_type_in_one_error():
    net = INPUT + (
        'layer { name: "a" type: "ReLU" bottom: "nope" top: "a" }\n'
        'layer { name: "b" type: "Bogus" bottom: "data" top: "b" }\n'
        'layer { name: "c" type: "ReLU" bottom: "nope2" top: "c" }\n'
        'layer { name: "d" type: "ReLU" bottom: "data" top: "a" }\n')
    with pytest.raises(NetDefinitionError) as e:
        caffe_fx.compile(net)
    message = str(e.value)
    assert "2 kinds of problems" in message
    assert "layer 'a' (ReLU): bottom[0] = 'nope' is not produced" in message
    assert "layer 'c' (ReLU): bottom[0] = 'nope2' is not produced" in message
    assert "layer 'd' (ReLU): top[0] = 'a' is already produced" in message
    assert "layer 'b' (type: Bogus)" in message
    # One error, caught by the except of either kind, holding each.
    assert isinstance(e.value, UnsupportedLayerError)
    assert isinstance(e.value, NetProblemsError)
    assert [type(p) for p in e.value.problems] == [NetDefinitionError, UnsupportedLayerError]
    assert e.value.layers == [("b", "Bogus")]


def test_dangling_bottoms_alone_keep_their_class_and_suggest_the_closest_blob():
    blobs = "".join(f'layer {{ name: "r{i}" type: "ReLU" bottom: "data" top: "relu{i}" }}\n'
                    for i in range(14))
    net = INPUT + blobs + ('layer { name: "x" type: "ReLU" bottom: "relu_3" top: "x" }\n'
                           'layer { name: "y" type: "ReLU" bottom: "relu_3" top: "y" }\n')
    with pytest.raises(NetDefinitionError) as e:
        caffe_fx.compile(net)
    assert type(e.value) is NetDefinitionError
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and "layer 'x'" in lines[0] and "layer 'y'" in lines[1]
    assert "15 blobs are known; the closest: relu3" in lines[0]


def test_every_layer_that_cannot_be_set_up_in_one_error():
    net = INPUT + (
        'layer { name: "a" type: "Convolution" bottom: "data" top: "a" '
        'convolution_param { num_output: 2 kernel_size: 3 stride: 0 } }\n'
        'layer { name: "after_a" type: "ReLU" bottom: "a" top: "after_a" }\n'
        'layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
        'pooling_param { pool: MAX kernel_size: 20 } }\n'
        'layer { name: "e" type: "Eltwise" bottom: "data" bottom: "p" top: "e" }\n'
        'layer { name: "q" type: "InnerProduct" bottom: "data" top: "q" '
        'inner_product_param { num_output: 0 } }\n')
    with pytest.raises(ShapeError) as e:
        caffe_fx.compile(net)
    message = str(e.value)
    assert isinstance(e.value, UnsupportedFieldError)
    assert "layer 'a' (Convolution): convolution_param stride = 0" in message
    assert "layer 'q' (InnerProduct): inner_product_param.num_output = 0" in message
    assert "layer 'p' (Pooling): pooling_param kernel h = 20 is larger" in message
    # What reads a failed layer's top has no shapes to be checked on: not reported.
    assert "after_a" not in message and "layer 'e'" not in message


def test_every_blob_too_large_in_one_error():
    net = INPUT + "".join(
        f'layer {{ name: "ip{i}" type: "InnerProduct" bottom: "data" top: "ip{i}" '
        f'inner_product_param {{ num_output: {2 ** 30} }} }}\n' for i in range(5))
    with pytest.raises(ShapeError) as e:
        caffe_fx.compile(net)
    assert type(e.value) is ShapeError
    assert [f"layer 'ip{i}'" in str(e.value) for i in range(5)] == [True] * 5


@pytest.mark.parametrize("save", ["save", "save_hdf5"])
def test_every_layer_whose_weights_do_not_fit_in_one_error(tmp_path, save):
    from caffe_fx import pycaffe
    convs = ('layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
             'convolution_param {{ num_output: 4 kernel_size: {k} }} }}\n'
             'layer {{ name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2" '
             'convolution_param {{ num_output: 2 kernel_size: 1 }} }}\n'
             'layer {{ name: "ip" type: "InnerProduct" bottom: "conv2" top: "ip" '
             'inner_product_param {{ num_output: {n} }} }}\n')
    stored = tmp_path / "stored.prototxt"
    stored.write_text(INPUT + convs.format(k=5, n=3))
    path = tmp_path / f"w.{'h5' if save == 'save_hdf5' else 'caffemodel'}"
    getattr(pycaffe.Net(str(stored), pycaffe.TEST), save)(str(path))
    with pytest.raises(WeightsError) as e:
        caffe_fx.compile(INPUT + convs.format(k=3, n=4), path)
    lines = str(e.value).splitlines()
    assert len(lines) == 2
    assert "layer 'conv1' (Convolution): blob 0 (weight) has shape [4, 3, 5, 5]" in lines[0]
    # InnerProduct: both blobs named in its one line (conv2's fit: not reported).
    assert "layer 'ip' (InnerProduct): blob 0 (weight) has shape [3, 32]" in lines[1]
    assert "blob 1 (bias) has shape [3]" in lines[1]
    assert "conv2" not in str(e.value)


def test_several_kinds_pickle_as_they_are():
    import pickle
    net = INPUT + ('layer { name: "a" type: "ReLU" bottom: "nope" top: "a" }\n'
                   'layer { name: "b" type: "Bogus" bottom: "data" top: "b" }\n')
    with pytest.raises(NetProblemsError) as e:
        caffe_fx.compile(net)
    again = pickle.loads(pickle.dumps(e.value))
    assert type(again) is type(e.value) and str(again) == str(e.value)
    assert [type(p) for p in again.problems] == [NetDefinitionError, UnsupportedLayerError]


def test_unknown_fields_are_reported_even_when_the_net_has_no_outputs():
    # A typo leaves a layer without type or tops: its field, its missing type and the
    # empty outputs all come in one error, the field first.
    with pytest.raises(ProtoParseError) as e:
        caffe_fx.compile('layer { name: "x" typo: 3 }\n')
    message = str(e.value)
    assert message.index("has no field 'typo'") < message.index("Unknown layer type ''")
    assert isinstance(e.value, InputError) and isinstance(e.value, UnsupportedLayerError)
    assert "the net has no outputs" in message


def test_a_layer_no_output_reaches_is_still_checked_as_caffe_sets_it_up():
    from caffe_fx import pycaffe

    net = INPUT + ('layer { name: "x" type: "Bogus" bottom: "data" }\n'
                   'layer { name: "r" type: "ReLU" bottom: "data" }\n'
                   'layer { name: "e" type: "Eltwise" bottom: "data" top: "e" }\n')
    # pycaffe builds every layer; compile(outputs=...) prunes, yet never past these.
    for make in (lambda: pycaffe.Net(net, pycaffe.TEST),
                 lambda: caffe_fx.compile(net, outputs=["data"])):
        with pytest.raises(NetProblemsError) as e:
            make()
        message = str(e.value)
        assert isinstance(e.value, UnsupportedLayerError) and \
            isinstance(e.value, NetDefinitionError)
        assert "layer 'x' (type: Bogus)" in message
        assert "layer 'r' (ReLU) has 0 tops; allowed: exactly 1" in message
        assert "layer 'e' (Eltwise) has 1 bottoms; allowed: at least 2" in message


def test_a_solver_given_as_the_net_is_named_as_one_with_the_nets_it_names(shared_models):
    # BVLC's LeNet solvers, read as nets: not fourteen unknown fields but what the file is.
    import caffe_fx.pycaffe as caffe

    mnist = shared_models / "BVLC+caffe" / "examples" / "mnist"
    for load in (caffe_fx.compile, lambda f: caffe.Net(f, caffe.TEST)):
        with pytest.raises(ProtoParseError, match=(
                r"lenet_solver.prototxt: this is a solver prototxt \(every field in it is "
                r"SolverParameter's\), not a net \(it names net = "
                r"'examples/mnist/lenet_train_test.prototxt'\); give the net's prototxt "
                r"here, or train with the solver: caffe_fx.Solver")):
            load(str(mnist / "lenet_solver.prototxt"))
    with pytest.raises(ProtoParseError, match=(
            r"it names train_net = 'mnist/lenet_auto_train.prototxt', test_net = "
            r"'mnist/lenet_auto_test.prototxt'\)")):
        caffe_fx.compile(str(mnist / "lenet_auto_solver.prototxt"))


def test_a_net_given_as_the_solver_is_named_as_one(shared_models):
    from caffe_fx.optim import read_solver

    net = shared_models / "BVLC+caffe" / "examples" / "mnist" / "lenet_train_test.prototxt"
    with pytest.raises(ProtoParseError, match=(
            r"lenet_train_test.prototxt: this is a net prototxt \(every field in it is "
            r"NetParameter's\), not a solver; a solver file names it in its `net:` field")):
        read_solver(net)


def test_a_net_with_one_solver_field_is_still_a_net_with_an_unknown_field():
    # Only a file every field of which is the other message's is called the other kind.
    with pytest.raises(ProtoParseError) as e:
        caffe_fx.compile('base_lr: 0.1\nlayer { name: "d" type: "Input" top: "d" '
                         'input_param { shape { dim: 1 } } }\n')
    assert "1 field(s) that neither Caffe's schema" in str(e.value)
    assert "has no field 'base_lr'" in str(e.value) and "solver" not in str(e.value)
