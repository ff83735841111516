"""The typed settings of the learning itself, one section per concern: split, balance, augment, model
and train. `workbench.config` composes them (with data, tracking and purpose) into an experiment's
config; core modules take these sections whole, and never import the config."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workbench.core.models import MODELS

# The only protocol that resamples before splitting: kept solely to reproduce the original project.
ORIGINAL_PROTOCOL = "original-smote-before-split"
HONEST_PROTOCOL = "split-then-resample"
Protocol = Literal["split-then-resample", "original-smote-before-split"]
TTA = Literal["none", "flip", "tencrop", "dense", "warped"]  # test-time views (core/tta.py)
TTA_MODES = get_args(TTA)
CROPPING_TTA = ("tencrop", "dense", "warped")  # the views of a model that crops (augment.crop)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(Section):
    use_official: bool = Field(
        True, description="use the dataset's own split (FER-2013 Usage, train/test folders)"
    )
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    seed: int | None = Field(
        None,
        ge=0,
        lt=2**31,
        description="draws the split and any max_faces sample; null = the experiment's seed",
    )


class BalanceConfig(Section):
    smote: bool = False
    smote_k: int = Field(5, ge=1)
    class_weight: bool = False


class AugmentConfig(Section):
    """Each geometric range is the one used at strength 1.0; `strength` scales them all (0 = none of
    them). Their defaults are the original project's ImageDataGenerator ranges. Crop, erasing, mixup
    and cutmix have their own settings (0 or null = off) and are off by default."""

    strength: float = Field(1.0, ge=0.0, le=1.0)
    rotation_deg: float = Field(20.0, ge=0.0, le=180.0)
    shift: float = Field(0.2, ge=0.0, lt=1.0, description="fraction of the width/height")
    shear_deg: float = Field(
        0.2, ge=0.0, lt=45.0, description="ImageDataGenerator's shear_range, in degrees"
    )
    zoom: float = Field(0.2, ge=0.0, lt=1.0)
    flip: bool = True
    crop: int | None = Field(
        None,
        ge=8,
        description="train on random crop x crop parts of the face, test on its centre; null = off",
    )
    erasing: float = Field(
        0.0, ge=0.0, le=1.0, description="probability of erasing a random patch of a face (noise)"
    )
    mixup_alpha: float = Field(0.0, ge=0.0, description="mixup's Beta(alpha, alpha); 0 = off")
    cutmix_alpha: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="cutmix's Beta(alpha, alpha); 0 = off; with mixup, half the batches each",
    )


class DistillConfig(Section):
    """Knowledge distillation: train on a blend of the label and a teacher's probabilities for each
    training face (computed once, the teacher's own test-time views; Hinton et al. 2015)."""

    teacher_run: str | None = Field(
        None,
        description="MLflow run id of a finished, tested run trained on exactly these training faces; "
        "null = off",
    )
    weight: float = Field(
        0.9, ge=0.0, le=1.0, description="the teacher's share of each training target"
    )
    temperature: float = Field(
        1.0,
        gt=0.0,
        le=20.0,
        description="softens the teacher's probabilities: p^(1/T), renormalised",
    )


class ModelConfig(Section):
    name: str = Field("reference", description="one of the registry's models (core/models)")
    filters: list[int] | None = Field(
        None, min_length=1, description="per block/stage; null = the model's own"
    )
    conv_dropout: float = Field(0.25, ge=0.0, lt=1.0)
    dense_units: int = Field(1024, gt=0, description="reference only")
    dense_batchnorm: bool = Field(
        False,
        description="reference only: Dense -> BatchNorm -> Dropout, as the "
        "original's scoring model",
    )
    dense_dropout: float = Field(0.5, ge=0.0, lt=1.0)
    bn_momentum: float = Field(
        0.99,
        gt=0.0,
        lt=1.0,
        description="BatchNorm's moving-average momentum (Keras: "
        "0.99); lower settles in fewer steps",
    )

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
        return name

    @model_validator(mode="after")
    def _positive_filters(self) -> ModelConfig:
        if self.filters is not None and min(self.filters) < 1:
            raise ValueError("model.filters: every block needs at least 1 filter")
        return self


class TrainConfig(Section):
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(
        1e-3, gt=0.0, lt=1.0, description="the peak rate (after any warm-up)"
    )
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(
        0.0, ge=0.0, lt=1.0, description="decoupled weight decay (all optimizers)"
    )
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd only (Nesterov)")
    schedule: Literal["constant", "cosine", "plateau"] = "constant"
    warmup_epochs: float = Field(
        0.0, ge=0.0, description="cosine, constant: linear warm-up from 0 to the peak"
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = Field(
        "float32",
        description="auto = bf16 on CPUs with AVX512-BF16/AMX, fp16 on a GPU, else float32",
    )
    monitor: Literal["val_accuracy", "val_macro_f1", "val_loss"] = Field(
        "val_accuracy", description="picks the best epoch (restore_best) and drives early stopping"
    )
    restore_best: bool = Field(True, description="test the weights of the best validation epoch")
    tta: TTA = Field(
        "none",
        description="test-time views averaged: the face and its mirror (flip), four corner crops "
        "and the centre crop (tencrop) or every crop 2 px apart (dense), with their mirrors; "
        "warped: tencrop of the face and of it zoomed in and out 10% and turned 8 deg either way; "
        "tencrop, dense and warped need augment.crop",
    )
    plateau_factor: float = Field(0.5, gt=0.0, lt=1.0, description="plateau: the rate's cut")
    plateau_patience: int = Field(
        3, ge=1, description="plateau: epochs without a better monitor before the cut"
    )
    early_stopping_patience: int | None = Field(None, ge=1)
    deterministic: bool = Field(
        True, description="TF op determinism: same config, same numbers on CPU"
    )

    @model_validator(mode="before")
    @classmethod
    def _tta_flip_is_tta(cls, data):
        """Configs and logged runs from before `tta` said `tta_flip: true|false`."""
        if isinstance(data, dict) and "tta_flip" in data:
            data = dict(data)
            flip = data.pop("tta_flip")
            data.setdefault("tta", tta_of(flip))
        return data


def tta_of(flip) -> str:
    """`tta` for an old `tta_flip` value (a bool, or its logged text)."""
    return "flip" if str(flip).lower() in ("true", "1") else "none"
