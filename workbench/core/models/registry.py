"""The model registry: `make_model(name, input_shape, num_classes, **options)`, one module per model.

Every model takes raw 0..255 faces (float32, grey or RGB): scaling is its first layer, so a logged
model needs no preprocessing. Its softmax is float32 whatever the precision policy.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from workbench.core.models import mini_xception, reference, resnet, vgg
from workbench.errors import WorkbenchError

BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "reference": reference.make_model,
    "vgg": vgg.make_model,
    "mini_xception": mini_xception.make_model,
    "resnet": resnet.make_model,
}


def make_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    crop: int | None = None,
    **options,
) -> keras.Model:
    """`crop`: train on random crop x crop parts of the face, predict from its centre (augment.crop)."""
    if name not in BUILDERS:
        raise WorkbenchError(f"model.name: unknown model {name!r} (known: {', '.join(BUILDERS)})")
    return BUILDERS[name](input_shape, num_classes, crop=crop, **options)


def flops_per_image(model: keras.Model) -> int:
    """Multiply-adds x 2 of the convolutions and dense layers for one image (what dominates the cost)."""
    macs = 0
    for layer in _all_layers(model):
        kind = layer.__class__.__name__
        if kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
            _, h, w, c_out = layer.output.shape
            c_in = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            if kind == "Conv2D":
                macs += h * w * kh * kw * c_in * c_out
            elif kind == "DepthwiseConv2D":
                macs += h * w * kh * kw * c_in
            else:  # depthwise then pointwise
                macs += h * w * (kh * kw * c_in + c_in * c_out)
        elif kind == "Dense":
            macs += layer.input.shape[-1] * layer.units
    return int(2 * macs)


def _all_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer
