"""caffe_fx/ops/functional.py: MAX/AVE pooling hands its gradient on in its top's NHWC
layout (so that torch's pooling backward runs its NHWC kernel without copying the bottom
diff), and the values are torch's own."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from caffe_fx.ops import functional as CF


def test_pool_gradient_arrives_in_the_tops_layout() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 6, generator=g).contiguous(memory_format=torch.channels_last)
    for pool, ref in ((CF.max_pool, lambda t: F.max_pool2d(t, 2, 2, 0, 1, True)),
                      (CF.ave_pool, lambda t: F.avg_pool2d(t, 2, 2, 0, True, True))):
        a = x.clone().requires_grad_(True)
        y = pool(a, kernel=[2, 2], stride=[2, 2], pad=[0, 0], ceil=True)
        dy = torch.randn(y.shape, generator=g)  # NCHW, as InnerProduct's flatten gives
        y.backward(dy)
        b = x.clone().requires_grad_(True)
        ref(b).backward(dy)
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
        assert a.grad.is_contiguous(memory_format=torch.channels_last)
        assert y.grad_fn is not None and "_GradInTopLayout" in type(y.grad_fn).__name__
