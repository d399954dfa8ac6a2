"""pycaffe Net scripts run unchanged under BVLC pycaffe 1.0 and caffe_fx.pycaffe.

`run(caffe, prototxt, weights, ranges)` drives one net through construction, forward,
forward(start=, end=), reshape + forward, writing net.params, Blob::Reshape's kept
memory and forward_all, and returns (meta, arrays): names and shapes as JSON-able values, blob data as float32.
tools/make_pycaffe_goldens.py runs it under real pycaffe (Python 3.9); tests/pycaffe/
test_net.py runs it with caffe_fx.pycaffe and compares.
"""
import numpy as np

SMALL = """name: "small"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
        inner_product_param { num_output: 5 } }
layer { name: "ip2" type: "InnerProduct" bottom: "pool1" top: "ip2"
        inner_product_param { num_output: 5 } }
layer { name: "sum" type: "Eltwise" bottom: "ip1" bottom: "ip2" top: "sum" }
layer { name: "prob" type: "Softmax" bottom: "sum" top: "prob" }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip1" bottom: "ip2" top: "loss"
        loss_weight: 0.5 }
"""

BN = """name: "bn"
input: "data"
input_shape { dim: 2 dim: 3 dim: 6 dim: 6 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 bias_term: false } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1"
        scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "relu1" }
layer { name: "pool1" type: "Pooling" bottom: "relu1" top: "pool1"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "flat" type: "Flatten" bottom: "pool1" top: "flat" }
layer { name: "ip1" type: "InnerProduct" bottom: "flat" top: "ip1"
        inner_product_param { num_output: 3 } }
"""

NETS = {"small": SMALL, "bn": BN}

# (start, end) layer names for forward(start=, end=), per net: in-place writers, Split
# layers (named as Caffe's InsertSplits names them) and the layers after them.
RANGES = {
    "small": [(None, "conv1"), ("relu1", "pool1_pool1_0_split"), ("ip1", "sum")],
    "bn": [(None, "bn1"), ("scale1", "flat")],
    "lenet": [(None, "conv1"), ("pool1", None)],
}


# (first, second) batch sizes: LeNet's blobs are large, so it runs with 1 then 2.
BATCHES = {"small": (2, 3), "bn": (2, 3), "lenet": (1, 2)}


def describe(net):
    """Everything pycaffe shows about a net besides blob contents, as JSON values."""
    return {
        "layer_names": list(net._layer_names),
        "layer_types": [layer.type for layer in net.layers],
        "layer_nblobs": [len(layer.blobs) for layer in net.layers],
        "layer_dict": list(net.layer_dict),
        "blobs": [[name, list(blob.shape)] for name, blob in net.blobs.items()],
        "params": [[name, [list(b.shape) for b in blobs]] for name, blobs in net.params.items()],
        "inputs": list(net.inputs),
        "outputs": list(net.outputs),
        "top_names": [[k, list(v)] for k, v in net.top_names.items()],
        "bottom_names": [[k, list(v)] for k, v in net.bottom_names.items()],
        "blob_loss_weights": [[k, float(v)] for k, v in net.blob_loss_weights.items()],
    }


def fill_params(net, rng):
    """Deterministic weights; BatchNorm gets positive variances and a scale factor."""
    for name, blobs in net.params.items():
        for k, blob in enumerate(blobs):
            values = rng.standard_normal(blob.data.shape).astype(np.float32) * 0.5
            if net.layer_dict[name].type == "BatchNorm" and k == 1:
                values = np.abs(values) + 0.5
            if net.layer_dict[name].type == "BatchNorm" and k == 2:
                values = np.full(blob.data.shape, 2.0, np.float32)
            blob.data[...] = values


def run(caffe, prototxt, weights, ranges, batches=(2, 3)):
    rng = np.random.RandomState(7)
    meta, arrays = {}, {}

    def record(step, net):
        meta[step + "/shapes"] = [[n, list(b.shape)] for n, b in net.blobs.items()]
        for name, blob in net.blobs.items():
            arrays[step + "/" + name] = np.array(blob.data, dtype=np.float32)

    if weights is None:
        net = caffe.Net(prototxt, caffe.TEST)
        fill_params(net, rng)
    else:
        net = caffe.Net(prototxt, caffe.TEST, weights=weights)
    meta["net"] = describe(net)
    in_ = net.inputs[0]
    shape = list(net.blobs[in_].shape)

    # A batch of our own (LeNet's 64 would make large goldens), then reshape().
    n, n2 = batches
    net.blobs[in_].reshape(n, *shape[1:])
    net.reshape()
    x = rng.rand(n, *shape[1:]).astype(np.float32)
    out = net.forward(**{in_: x})
    meta["forward/keys"] = sorted(out)
    record("forward", net)

    net.blobs[in_].data[...] = rng.rand(n, *shape[1:])
    for k, (start, end) in enumerate(ranges):
        out = net.forward(start=start, end=end)
        meta[f"range{k}/keys"] = sorted(out)
        record(f"range{k}", net)

    net.blobs[in_].reshape(n2, *shape[1:])
    net.blobs[in_].data[...] = rng.rand(n2, *shape[1:])
    net.reshape()
    meta["reshape/shapes"] = [[n, list(b.shape)] for n, b in net.blobs.items()]
    out = net.forward(blobs=[list(net.blobs)[1]])
    meta["reshape/keys"] = sorted(out)
    record("reshape", net)

    first = next(iter(net.params))
    net.params[first][0].data[...] *= -0.5
    net.forward()
    record("params", net)

    # Blob::Reshape keeps the memory of a blob that does not grow: the input shrunk and
    # net.reshape() with nothing written shows the first values of every blob, which the
    # next forward then reads.  (Growing back is not recorded: Caffe shows old values up
    # to the largest size a blob ever had, caffe_fx.pycaffe zeros.)
    net.blobs[in_].reshape(1, *shape[1:])
    net.reshape()
    record("shrink", net)
    net.forward()
    record("shrink_forward", net)
    net.blobs[in_].reshape(n2, *shape[1:])
    net.reshape()

    if any(len(net.blobs[o].shape) == 0 for o in net.outputs):
        return meta, arrays  # forward_all cannot concatenate scalar (loss) outputs
    outs = net.forward_all(**{in_: rng.rand(5, *shape[1:]).astype(np.float32)})
    meta["forward_all/keys"] = sorted(outs)
    for name, value in outs.items():
        arrays["forward_all/" + name] = np.array(value, dtype=np.float32)
    return meta, arrays
