"""Models, by name. This module holds the facts the config needs without importing Keras; the builders
are in one module each, and `workbench.models.registry.make_model` picks one."""

from __future__ import annotations

# Each model's widths, one per block (reference), stage (vgg) or residual module (mini_xception).
DEFAULT_FILTERS: dict[str, tuple[int, ...]] = {
    "reference": (32, 64, 128, 256, 512),
    "vgg": (32, 64, 128, 256),
    "mini_xception": (16, 32, 64, 128),
    "resnet": (32, 64, 128, 256),
}
# What each model's options are (besides input shape and classes), so the config can pass only those.
OPTIONS = {
    "reference": (
        "filters",
        "conv_dropout",
        "dense_units",
        "dense_batchnorm",
        "dense_dropout",
        "bn_momentum",
    ),
    "vgg": ("filters", "conv_dropout", "dense_dropout", "bn_momentum"),
    "mini_xception": ("filters", "bn_momentum"),
    "resnet": ("filters", "dense_dropout", "bn_momentum"),
}


def min_image_size(name: str, filters: list[int] | None) -> int:
    """Every block halves the input (resnet's first stage keeps it): the smallest image a model takes
    is 2 ** halvings."""
    halvings = len(filters or DEFAULT_FILTERS[name]) - (name == "resnet")
    return 2**halvings


def options_for(name: str, options: dict) -> dict:
    """The subset of `options` that model `name` takes; a null `filters` means the model's own."""
    return {
        k: v
        for k, v in options.items()
        if k in OPTIONS[name] and not (k == "filters" and v is None)
    }


# The models there are, by name: the one list the config validates against and the registry builds.
MODELS = tuple(DEFAULT_FILTERS)
