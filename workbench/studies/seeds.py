"""One experiment over several training seeds: a parent MLflow run with a child per seed (seed,
seed+1, ...; the faces and their split fixed by the first seed unless `split.seed` says otherwise),
and the mean, standard deviation and 95% t-interval of each test score on the parent."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow

from workbench.config import ExperimentConfig
from workbench.core import stats
from workbench.data import load_faces
from workbench.experiment import resume_key, run_experiment
from workbench.tracking import lineage, provenance, runs, store

SEEDS_KEY = "seeds_key"
# What varies between the children: said in the parent's tags and in docs/reading-the-numbers.md.
VARIES = "training seed (initial weights, shuffling, augmentation, SMOTE); faces and split fixed"


@dataclass
class SeedsResult:
    run_id: str
    children: list[str]  # run ids, in seed order
    metrics: dict[str, float]  # test_<score> (the mean), _std, _ci_low, _ci_high


def child_config(cfg: ExperimentConfig, index: int, parent_run_id: str) -> ExperimentConfig:
    child = cfg.model_copy(deep=True)
    child.seeds, child.seed = 1, cfg.seed + index
    child.split.seed = cfg.data_seed  # the same faces and split for every seed
    child.tracking.run_name = f"{cfg.tracking.run_name or cfg.name} seed={child.seed}"
    child.purpose.role, child.purpose.parent_run_id = "arm", parent_run_id
    child.purpose.tags = {"seeds.role": "seed", "seeds.index": str(index)}
    return child


def summary(children: list[dict[str, float]]) -> dict[str, float]:
    """Each test score's mean over the children's metrics, its spread and its t-interval."""
    out: dict[str, float] = {}
    for score in stats.SCORED:
        s = stats.seed_summary([c[f"test_{score}"] for c in children])
        key = f"test_{score}"
        out |= {key: s["mean"], f"{key}_std": s["std"]}
        out |= {f"{key}_ci_low": s["ci_low"], f"{key}_ci_high": s["ci_high"]}
    return out


def run_seeds(cfg: ExperimentConfig) -> SeedsResult:
    """cfg.seeds children under one parent; the same command again reopens the unfinished parent,
    keeps its finished children and resumes the one cut short (by its own resume key)."""
    digest = load_faces(cfg.data, cfg.data_seed).digest
    experiment_id = store.configure(cfg.experiment_name)
    key = resume_key(cfg, digest)
    parent_id = runs.find_unfinished_run(experiment_id, key, SEEDS_KEY)
    tags = {
        "seeds.role": "parent",
        "seeds.n": str(cfg.seeds),
        "seeds.varies": VARIES,
        "seeds.interval": "95% t-interval of the mean over seeds",
        SEEDS_KEY: key,
        **provenance.provenance_tags(),
    }
    name = f"{cfg.tracking.run_name or cfg.name} · {cfg.seeds} seeds"
    with runs.tracked_run(name, tags=tags, run_id=parent_id) as parent:
        if parent_id is None:
            lineage.log_config(cfg)
        done = runs.finished_children(experiment_id, parent.info.run_id, "seeds.index")
        ids, children = [], []
        for i in range(cfg.seeds):
            if str(i) in done:
                run = done[str(i)]
                print(f"seed {cfg.seed + i}: finished before (run {run.info.run_id}), kept")
            else:
                result = run_experiment(child_config(cfg, i, parent.info.run_id))
                run = mlflow.MlflowClient().get_run(result.run_id)
            ids.append(run.info.run_id)
            children.append(dict(run.data.metrics))
        metrics = summary(children)
        mlflow.log_metrics(metrics)
    return SeedsResult(parent.info.run_id, ids, metrics)
