"""A sweep's specification (experiments/sweep.yaml): base experiment, objective, sampler, pruner,
heartbeat, fixed overrides and the search space, validated with one-line errors."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from workbench.config import (
    ExperimentConfig,
    config_from_dict,
    find_yaml,
    flatten,
    read_yaml_mapping,
    set_dotted,
)
from workbench.errors import WorkbenchError

# Per-epoch validation metrics a trial reports (train.ValidationScores and Keras' own).
OBJECTIVE_METRICS = {
    "val_macro_f1": "maximize",
    "val_balanced_accuracy": "maximize",
    "val_accuracy": "maximize",
    "val_loss": "minimize",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Param(_Strict):
    """A float/int range (low, high, optional log or step) or a list of choices; with `when`, drawn
    only in trials where earlier parameters took the given values (a conditional space, e.g.
    `train.momentum` only for `train.optimizer: sgd`). Not drawn, a key keeps the base config's value."""

    # int | float keeps `low: 1` an int (an integer range) and `low: 0.0` a float.
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[Any] | None = None
    when: dict[str, Any] = Field(
        default_factory=dict, description="key: value or [values] it needs"
    )

    def applies(self, drawn: dict[str, Any]) -> bool:
        for key, wanted in self.when.items():
            allowed = wanted if isinstance(wanted, list) else [wanted]
            if key not in drawn or drawn[key] not in allowed:
                return False
        return True

    @model_validator(mode="after")
    def _range_or_choices(self) -> Param:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            if not self.choices:
                raise ValueError("choices must not be empty")
        elif self.low is None or self.high is None:
            raise ValueError("needs low and high, or choices")
        elif self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        elif self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        return self


class ObjectiveSpec(_Strict):
    metric: Literal["val_macro_f1", "val_balanced_accuracy", "val_accuracy", "val_loss"] = (
        "val_macro_f1"
    )

    @property
    def direction(self) -> str:
        return OBJECTIVE_METRICS[self.metric]


class Sampler(_Strict):
    seed: int = 42
    n_startup_trials: int = Field(10, ge=0)


class Pruner(_Strict):
    kind: Literal["median", "hyperband", "successive_halving", "none"] = "median"
    n_startup_trials: int = Field(5, ge=0, description="median: trials before pruning starts")
    n_warmup_steps: int = Field(
        1, ge=0, description="median: the earliest epoch after which a trial can be pruned"
    )
    min_resource: int = Field(
        1, ge=1, description="hyperband, successive_halving: fewest epochs a trial runs"
    )
    reduction_factor: int = Field(
        3, ge=2, description="hyperband, successive_halving: 1 in this many goes on at each rung"
    )


class Heartbeat(_Strict):
    interval: int = Field(20, ge=1, description="seconds between a running trial's heartbeats")
    grace_period: int = Field(
        60, ge=2, description="a trial silent this long is failed (its worker died)"
    )
    max_retry: int = Field(1, ge=0, description="a failed-by-heartbeat trial is re-run this often")


class SweepSpec(_Strict):
    experiment: str = "baseline"
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    sampler: Sampler = Field(default_factory=Sampler)
    pruner: Pruner = Field(default_factory=Pruner)
    heartbeat: Heartbeat = Field(default_factory=Heartbeat)
    fixed: dict[str, Any] = Field(
        default_factory=dict, description="config overrides for every trial"
    )
    baseline_trial: bool = Field(
        True,
        description="trial 0 is the base experiment as it is, so the study measures its own margin",
    )
    params: dict[str, Param] = Field(min_length=1)

    @model_validator(mode="after")
    def _conditions_name_unconditional_choices(self) -> SweepSpec:
        for key, param in self.params.items():
            for parent, wanted in param.when.items():
                found = self.params.get(parent)
                if found is None or found.choices is None or found.when:
                    raise ValueError(
                        f"{key}: when {parent}: must name a choices parameter that has no when"
                    )
                for value in wanted if isinstance(wanted, list) else [wanted]:
                    if value not in found.choices:
                        raise ValueError(
                            f"{key}: when {parent}: {value!r} is not one of its choices"
                        )
        return self

    def in_draw_order(self) -> list[tuple[str, Param]]:
        """Unconditional parameters first (file order), then those that depend on them."""
        return sorted(self.params.items(), key=lambda item: bool(item[1].when))


def load_spec(name_or_path: str) -> tuple[SweepSpec, Path]:
    path = find_yaml(name_or_path, "sweep")
    tree = read_yaml_mapping(path, "a mapping (experiment, objective, params, ...)")
    try:
        return SweepSpec.model_validate(tree), path
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            raise WorkbenchError(
                f"{path}: unknown key '{field}' (see experiments/sweep.yaml)"
            ) from None
        raise WorkbenchError(
            f"{path}: {field}: {first['msg'].removeprefix('Value error, ')}"
        ) from None


def check_space(spec: SweepSpec, base_tree: dict[str, Any], source: Path) -> None:
    """Every swept key must be a real config key that accepts the range's ends / every choice."""
    known = set(flatten(ExperimentConfig().model_dump()))
    for key, param in spec.params.items():
        if key not in known:
            raise WorkbenchError(
                f"{source}: params.{key}: not a config key (e.g. train.learning_rate, "
                f"model.conv_dropout, augment.strength, balance.smote)"
            )
        values = param.choices if param.choices is not None else [param.low, param.high]
        for value in values:
            tree = copy.deepcopy(base_tree)
            for (
                parent,
                wanted,
            ) in param.when.items():  # checked as it will be drawn: under its condition
                set_dotted(tree, parent, wanted[0] if isinstance(wanted, list) else wanted)
            tree = set_dotted(tree, key, _typed(param, value))
            try:
                config_from_dict(tree, f"{source}: params.{key}")
            except WorkbenchError as err:
                raise WorkbenchError(f"{err} (value {value!r} from the search space)") from None


def _is_int(param: Param) -> bool:
    return param.choices is None and isinstance(param.low, int) and isinstance(param.high, int)


def _typed(param: Param, value: Any) -> Any:
    return int(value) if _is_int(param) else value


def suggest(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Any]:
    """The trial's values for every swept key, drawn through Optuna's own suggest API."""
    values = {}
    for key, p in spec.in_draw_order():
        if not p.applies(values):
            continue  # Optuna's define-by-run: this trial's space simply lacks it
        if p.choices is not None:
            values[key] = trial.suggest_categorical(key, p.choices)
        elif _is_int(p):
            values[key] = trial.suggest_int(
                key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
            )
        else:
            values[key] = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
    return values


def base_values(spec: SweepSpec, base_tree: dict[str, Any]) -> dict[str, Any]:
    """The base experiment's own value for every key the space would draw (its conditions included)."""
    cfg = config_from_dict(copy.deepcopy(base_tree), "base config").flat()
    values: dict[str, Any] = {}
    for key, p in spec.in_draw_order():
        if p.applies(values):
            values[key] = cfg[key]
    return values


def trial_config(base_tree: dict[str, Any], values: dict[str, Any]) -> ExperimentConfig:
    tree = copy.deepcopy(base_tree)
    for key, value in values.items():
        set_dotted(tree, key, value)
    return config_from_dict(tree, "trial config")


def fingerprint(spec: SweepSpec, base_tree: dict[str, Any]) -> str:
    """What a study was created with: resuming it with a different space or base config is refused."""
    payload = {"spec": spec.model_dump(mode="json", exclude={"heartbeat"}), "base": base_tree}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]
