"""The training recipe: precision policy, optimizer with its learning-rate schedule, loss; compile.

Everything here takes plain values (the config's train.* keys), so a sweep can vary any of them.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import keras
import tensorflow as tf


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """AVX512-BF16 or AMX: the CPU multiplies bfloat16 natively (elsewhere bf16 is emulated, slower)."""
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision: str) -> str:
    """`auto` -> mixed_float16 on a GPU, mixed_bfloat16 on a CPU that has bf16 units, else float32."""
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


@contextlib.contextmanager
def dtype_policy(policy: str):
    """Keras keeps its policy globally; layers take it when built. Set it for one build, then restore."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def steps_per_epoch(faces: int, batch_size: int) -> int:
    """Training batches an epoch: full batches only (see augment.training_dataset), at least one."""
    return max(1, faces // batch_size)


def learning_rate(
    schedule: str, peak: float, steps_per_epoch: int, epochs: int, warmup_epochs: float
):
    """A schedule object for cosine, and for constant after a warm-up; else a float (plateau's
    callback lowers it, so it gets no warm-up). Constant warms up too so that early epochs of the two
    schedules compare fairly: a sweep's pruner ranks epoch 1, which was all warm-up for cosine only."""
    total = max(1, steps_per_epoch * epochs)
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total - 1)
    if schedule == "plateau" or (schedule == "constant" and not warmup):
        return peak
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else peak,
        decay_steps=total - warmup,
        alpha=0.0 if schedule == "cosine" else 1.0,  # 1.0: no decay, the peak after the warm-up
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(
    name: str, lr, weight_decay: float, momentum: float
) -> keras.optimizers.Optimizer:
    wd = weight_decay or None
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr, weight_decay=wd)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay)
    return keras.optimizers.SGD(learning_rate=lr, momentum=momentum, nesterov=True, weight_decay=wd)


def starting_rate(lr) -> float:
    """What the optimizer is built with: the schedule's value at step 0 (StepSchedule moves it)."""
    return float(lr(0)) if callable(lr) else float(lr)


class StepSchedule(keras.callbacks.Callback):
    """Sets the optimizer's learning rate from a Keras schedule before every training batch: the same
    values as passing the schedule to the optimizer, but the traced training step then reads one
    variable. Passed to the optimizer, the schedule is traced once per weight (AdamW asks for the rate
    for each weight's decoupled decay), and CosineDecay's warm-up is a tf.cond each time."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_train_batch_begin(self, batch: int, logs=None) -> None:
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.model.optimizer.learning_rate = float(self.schedule(step))


def schedule_callbacks(lr) -> list[keras.callbacks.Callback]:
    return [StepSchedule(lr)] if callable(lr) else []


def compile_model(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, label_smoothing: float
) -> keras.Model:
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    # Variables made inside the first training step make TensorFlow trace that step twice (~10-20 s on 2
    # cores): the optimizer's slots are made here instead, and the metric is an instance (a name,
    # "accuracy", is resolved and its variables made inside that step).
    model.optimizer.build(model.trainable_variables)
    return model
