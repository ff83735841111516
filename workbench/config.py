"""One typed configuration per experiment: loaded from experiments/*.yaml, overridable with --set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from workbench.core.models import min_image_size
from workbench.core.settings import (
    CROPPING_TTA,
    HONEST_PROTOCOL,
    AugmentConfig,
    BalanceConfig,
    DistillConfig,
    ModelConfig,
    Protocol,
    Section,
    SplitConfig,
    TrainConfig,
)
from workbench.errors import WorkbenchError

# Experiment and sweep files: the user's ./experiments first, then the ones shipped with the package
# (inside it when installed from a wheel, beside it in a source checkout).
_PACKAGE = Path(__file__).resolve().parent
SHIPPED_DIRS = (_PACKAGE / "experiments", _PACKAGE.parent / "experiments")


class DataConfig(Section):
    format: Literal["auto", "fer2013", "expw", "folders"] = "auto"
    path: str | None = Field(
        None, description="dataset file/folder; null = the bundled FER-2013 sample"
    )
    images_dir: str | None = Field(
        None, description="ExpW: folder of original images (default: found next to label.lst)"
    )
    crops_dir: str | None = Field(
        None,
        description="ExpW: folder of face crops already cut by label.lst, named "
        "<image stem>_<face_id>.jpg (any subfolders); used instead of the originals",
    )
    min_confidence: float = Field(
        0.0, description="ExpW: keep faces with confidence strictly above this"
    )
    max_faces: int | None = Field(
        None, gt=0, description="sample this many faces (seeded) after filtering"
    )
    image_size: int = Field(
        48, ge=16, le=256, description="faces are resized to image_size x image_size"
    )
    channels: Literal[1, 3] = Field(1, description="1 = grayscale (FER-2013's own form), 3 = RGB")
    resize: Literal["area", "linear"] = Field(
        "area",
        description="shrinking: area (no aliasing) or linear "
        "(cv2.resize's default, as the original)",
    )
    max_skip_fraction: float = Field(0.01, ge=0.0, le=1.0)
    dedupe: Literal["off", "drop-from-eval"] = Field(
        "off",
        description="validation/test faces that copy a training face (exact or near): kept (and "
        "scored both ways) or dropped before scoring",
    )
    cache_dir: str | None = Field(
        None, description="decoded-face cache (default: ~/.cache/fer-workbench)"
    )
    workers: int | None = Field(None, gt=0, description="decode threads (default: all cores)")


class TrackingConfig(Section):
    experiment: str | None = Field(
        None, description="MLflow experiment name (default: the config name)"
    )
    run_name: str | None = None
    log_model: bool = True


class PurposeConfig(Section):
    """What a run is for. `workbench.run` leaves the default (an experiment); the orchestrators set it
    (a sweep's trial, a reproduce arm). The one run path reads everything it does differently from here:
    - experiment: tested once on the test split, every artifact, resumed by its config;
    - trial: scored on validation (the test split is never touched), light artifacts, resumed only as
      its own retry (the sweep names the run: trial numbers differ);
    - arm: one of a comparison's runs: like an experiment, nested under its comparison's run."""

    role: Literal["experiment", "trial", "arm"] = "experiment"
    parent_run_id: str | None = Field(None, description="the MLflow run this one is nested under")
    tags: dict[str, str] = Field(default_factory=dict, description="MLflow tags the caller adds")

    @property
    def evaluate_on(self) -> Literal["test", "val"]:
        return "val" if self.role == "trial" else "test"

    @property
    def light(self) -> bool:
        """No model, face grids, per-face manifest or report page: a study runs many of these."""
        return self.role == "trial"

    @property
    def resumable(self) -> bool:
        """The same config started again continues its unfinished run (every run checkpoints)."""
        return self.role != "trial"


class ExperimentConfig(Section):
    name: str = "baseline"
    protocol: Protocol = HONEST_PROTOCOL
    seed: int = Field(42, ge=0, lt=2**31)
    seeds: int = Field(
        1,
        ge=1,
        le=20,
        description="train this many runs (seed, seed+1, ...; the split fixed) under one parent",
    )
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    balance: BalanceConfig = Field(default_factory=BalanceConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    purpose: PurposeConfig = Field(default_factory=PurposeConfig)

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> ExperimentConfig:
        if self.split.val_fraction + self.split.test_fraction >= 0.9:
            raise ValueError("split.val_fraction + split.test_fraction must be below 0.9")
        return self

    @model_validator(mode="after")
    def _image_fits_model(self) -> ExperimentConfig:
        smallest = min_image_size(self.model.name, self.model.filters)
        seen = self.augment.crop or self.data.image_size
        if seen < smallest:
            what = f"augment.crop {seen}" if self.augment.crop else f"data.image_size {seen}"
            raise ValueError(
                f"{what} is too small for model {self.model.name} "
                f"with {len(self.model.filters or []) or 'its default'} blocks (at least {smallest})"
            )
        return self

    @model_validator(mode="after")
    def _crop_fits_face(self) -> ExperimentConfig:
        crop = self.augment.crop
        if crop is not None and crop >= self.data.image_size:
            raise ValueError(
                f"augment.crop {crop} must be smaller than data.image_size {self.data.image_size}"
            )
        if self.train.tta in CROPPING_TTA and crop is None:
            raise ValueError(
                f"train.tta {self.train.tta} needs augment.crop (e.g. 40 of a 48 px face)"
            )
        return self

    @property
    def data_seed(self) -> int:
        """What draws the faces and their split: split.seed, else the training seed."""
        return self.seed if self.split.seed is None else self.split.seed

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.name

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values, as logged to MLflow params."""
        return flatten(self.model_dump(mode="json"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def user_experiments_dir() -> Path:
    return Path.cwd() / "experiments"


def experiment_dirs() -> list[Path]:
    dirs: list[Path] = []
    for d in (user_experiments_dir(), *SHIPPED_DIRS):
        if d.is_dir() and all(d.resolve() != seen.resolve() for seen in dirs):
            dirs.append(d)
    return dirs


def is_sweep_file(tree: dict[str, Any]) -> bool:
    return "experiment" in tree and "params" in tree


def known_files() -> dict[str, list[str]]:
    """Names findable by name, by kind: {"experiments": [...], "sweeps": [...]}."""
    known: dict[str, set[str]] = {"experiments": set(), "sweeps": set()}
    for d in experiment_dirs():
        for path in d.glob("*.yaml"):
            try:
                tree = yaml.safe_load(path.read_text()) or {}
            except (OSError, yaml.YAMLError):
                continue
            known[
                "sweeps" if isinstance(tree, dict) and is_sweep_file(tree) else "experiments"
            ].add(path.stem)
    return {kind: sorted(names) for kind, names in known.items()}


def find_yaml(name_or_path: str, what: str = "experiment") -> Path:
    """`baseline` -> ./experiments/baseline.yaml if there is one, else the shipped one; a path as it is."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in {".yaml", ".yml"} or candidate.exists() or "/" in name_or_path:
        if candidate.is_file():
            return candidate
        raise WorkbenchError(f"{candidate}: no such {what} file")
    for d in experiment_dirs():
        if (path := d / f"{name_or_path}.yaml").is_file():
            return path
    known = known_files()
    raise WorkbenchError(
        f"{name_or_path}: no such {what} in ./experiments or the shipped ones (experiments: "
        f"{', '.join(known['experiments'])}; sweeps: {', '.join(known['sweeps'])})"
    )


def text_key(key: str) -> bool:
    """True for a key whose value is text (a path, a name): `--set` takes it as given, not as YAML,
    so `#`, `~` or `:` in a path stay part of it."""
    model: Any = ExperimentConfig
    *sections, last = key.split(".")
    for name in sections:
        field = getattr(model, "model_fields", {}).get(name)
        if field is None or not isinstance(field.annotation, type):
            return False
        model = field.annotation
    field = getattr(model, "model_fields", {}).get(last)
    return field is not None and field.annotation in (str, str | None)


def parse_override(item: str) -> tuple[str, Any]:
    """`train.epochs=5` -> ('train.epochs', 5): the value is read as YAML (numbers, lists, null),
    except for text keys (`data.path=/data/set #2/x.csv` is that path; `null` resets one)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise WorkbenchError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=5")
    if text_key(key):
        return key, None if raw == "null" else raw
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def set_dotted(
    tree: dict[str, Any], key: str, value: Any, where: str | None = None
) -> dict[str, Any]:
    """set_dotted(tree, "train.epochs", 5) sets tree["train"]["epochs"] = 5; `where` starts the error message."""
    keys = key.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise WorkbenchError(f"{where or key}: {k} is not a section")
        node = child
    node[keys[-1]] = value
    return tree


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(tree, key, value, where=f"--set {item!r}")
    return tree


def _format_validation_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{field}' (check the spelling; see experiments/baseline.yaml for the keys)"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    # a check across keys
    if first["type"] == "value_error" and isinstance(first.get("input"), dict):
        return f"{source}: {first['msg'].removeprefix('Value error, ')}{more}"
    return f"{source}: {field}: {first['msg'].removeprefix('Value error, ')} (got {first.get('input')!r}){more}"


def config_from_dict(tree: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as err:
        raise WorkbenchError(_format_validation_error(source, err)) from None


def read_yaml_mapping(
    path: Path, what: str = "a mapping of sections (data, train, ...)"
) -> dict[str, Any]:
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise WorkbenchError(
            f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})"
        ) from None
    if not isinstance(tree, dict):
        raise WorkbenchError(f"{path}: expected {what} at the top level")
    return tree


def load_tree(name_or_path: str, overrides: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """The experiment's YAML as a dict with the overrides applied (not yet validated), and its source."""
    path = find_yaml(name_or_path)
    tree = read_yaml_mapping(path)
    if not tree:
        raise WorkbenchError(
            f"{path}: empty; an experiment names at least one section (see experiments/baseline.yaml)"
        )
    if is_sweep_file(tree):
        raise WorkbenchError(
            f"{path}: a sweep file, not an experiment; run it with "
            f"python -m workbench.sweep --space {name_or_path}"
        )
    tree.setdefault("name", path.stem)
    tree = apply_overrides(tree, overrides or [])
    return tree, f"{path}" + (" with --set overrides" if overrides else "")


def load_config(name_or_path: str, overrides: list[str] | None = None) -> ExperimentConfig:
    tree, source = load_tree(name_or_path, overrides)
    cfg = config_from_dict(tree, source)
    if cfg.tracking.run_name is None:
        cfg.tracking.run_name = default_run_name(cfg.name, overrides or [])
    return cfg


# Keys that change where things go, not what is trained: left out of run names.
_UNNAMED = ("tracking.", "data.cache_dir", "data.workers")


def default_run_name(name: str, overrides: list[str]) -> str:
    """The experiment's name, then what this run changes (`baseline lr=0.002 strength=0.5`): the MLflow
    UI cuts long names, so what differs between runs comes first and stays visible."""
    parts = [name]
    for item in overrides:
        key, value = parse_override(item)
        if key.startswith(_UNNAMED):
            continue
        text = Path(str(value)).name if key == "data.path" else str(value).replace(" ", "")
        if key == "model.name":
            parts.append(text)  # `baseline vgg ...`: the model says what it is
        else:
            parts.append(f"{key.rsplit('.', 1)[-1].replace('learning_rate', 'lr')}={text}")
    return " ".join(parts)
