"""Golden cases for BatchNorm: global statistics (TEST) and batch statistics (TRAIN)."""
from . import Case, input_net


def bn(name: str, params: str = "", shape=(2, 3, 5, 5), phase="test", randomize=True) -> Case:
    layer = ('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn"\n'
             '  batch_norm_param { %s } }\n' % params)
    return Case(f"batchnorm-{name}", "BatchNorm", input_net({"data": shape}) + layer,
                {"data": shape}, phase=phase, randomize=randomize)


CASES = [
    bn("global_stats"),
    bn("global_eps", "eps: 0.1"),
    bn("global_2d", shape=(4, 6)),
    bn("global_5d", shape=(2, 3, 2, 3, 4)),
    bn("global_zero_factor", randomize=False),  # all blobs 0: scale factor 0 -> mean = var = 0
    bn("test_batch_stats", "use_global_stats: false"),
    bn("train", phase="train"),
    bn("train_eps", "eps: 0.01 moving_average_fraction: 0.9", phase="train"),
    bn("train_2d", shape=(5, 4), phase="train"),
    bn("train_global_stats", "use_global_stats: true", phase="train"),
    # Starts from zero blobs, so the recorded blobs are exactly one running-stat update.
    bn("train_update", "moving_average_fraction: 0.9", phase="train", randomize=False),
]
