"""The same sweep with and without pruning: total epochs trained, best validation score, wall time.

    python benchmarks/sweep_pruning.py [--trials 12] [--epochs 20] [--max-faces 2000] [--seed 42]
                                       [--pruner median] [--unpruned FILE]

    python benchmarks/sweep_pruning.py --replay --json benchmarks/results/sweep_pruning.json

Both sweeps use the default search space and pruner settings (experiments/sweep.yaml, `--pruner`
names the kind) on the bundled sample, each in its own throw-away Optuna and MLflow store. The
sampler draws at random with the same seed in both (TPE's start-up phase lasts the whole study), so
both studies hold the same trials and only the pruner differs. Prints a table and writes JSON.

`--unpruned FILE` takes the unpruned study from an earlier run's JSON (same trials, epochs, faces
and seed, else refused) instead of training it again: training is deterministic, and it is the
expensive half (an hour at 20 epochs).

`--replay` trains nothing: it feeds the unpruned study's saved per-epoch curves, trial by trial in
their order, to each candidate pruner (Optuna's own, through `ask`/`report`/`should_prune`/`tell`, as
a one-worker study meets them) and prints the epochs each would have trained and the best value it
would have kept: how the pruner was chosen.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml

from workbench.files import write_json_atomic

REPO = Path(__file__).resolve().parent.parent
STUDY = "bench"


def run_sweep(pruner: dict, args: argparse.Namespace, workdir: Path) -> dict:
    spec = yaml.safe_load((REPO / "experiments" / "sweep.yaml").read_text())
    spec["pruner"]["kind"] = pruner["kind"]
    spec["sampler"]["seed"] = args.seed
    # random draws: the same trials in both studies
    spec["sampler"]["n_startup_trials"] = args.trials
    spec["fixed"]["train.epochs"] = args.epochs
    space = workdir / "space.yaml"
    space.write_text(yaml.safe_dump(spec))
    storage = f"sqlite:///{workdir / 'optuna.db'}"
    env = dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    cmd = [
        sys.executable,
        "-m",
        "workbench.sweep",
        "--space",
        str(space),
        "--study",
        STUDY,
        "--storage",
        storage,
        "--trials",
        str(args.trials),
        "--no-final",
        "--set",
        f"data.max_faces={args.max_faces}",
    ]
    started = time.perf_counter()
    subprocess.run(cmd, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=STUDY, storage=storage)
    states = [t.state.name for t in study.trials]
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    return {
        "params": [t.params for t in study.trials],
        # every trial's per-epoch objective: enough to replay another pruner on the unpruned study
        "curves": [
            [t.intermediate_values[k] for k in sorted(t.intermediate_values)] for t in study.trials
        ],
        "values": [t.value for t in complete],
        "pruner": pruner["kind"],
        "trials": len(study.trials),
        "pruned": states.count("PRUNED"),
        "epochs": sum(len(t.intermediate_values) for t in study.trials),
        "best_val_macro_f1": study.best_value,
        "best_trial": study.best_trial.number,
        "wall_s": wall,
    }


CANDIDATES = (
    [
        {"kind": "successive_halving", "min_resource": m, "reduction_factor": r}
        for m in (1, 2, 3)
        for r in (2, 3, 4)
    ]
    + [
        {"kind": "median", "n_startup_trials": n, "n_warmup_steps": w}
        for n in (2, 3, 4)
        for w in (1, 2, 3, 5)
    ]
    + [{"kind": "hyperband", "min_resource": m, "reduction_factor": 3} for m in (1, 2)]
)


def replay(full: dict, pruner: dict, epochs: int) -> dict:
    """What `pruner` would have done to the unpruned study's trials (their curves and final values)."""
    from workbench.studies.search_space import SweepSpec
    from workbench.studies.storage import pruner as make_pruner

    spec = yaml.safe_load((REPO / "experiments" / "sweep.yaml").read_text())
    spec["pruner"] = pruner
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The live study's name: Hyperband puts a trial in a bracket by a hash of study name and number,
    # so another name would be another (and, unnamed, a random) assignment.
    study = optuna.create_study(
        study_name=STUDY,
        direction="maximize",
        pruner=make_pruner(SweepSpec.model_validate(spec), epochs),
    )
    trained, kept = 0, []
    for curve, value in zip(full["curves"], full["values"], strict=True):
        trial = study.ask()
        for step, v in enumerate(curve, start=1):
            trial.report(v, step)
            if step < len(curve) and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                trained += step
                break
        else:
            study.tell(trial, value)
            trained += len(curve)
            kept.append(value)
    return {
        "pruner": pruner,
        "epochs": trained,
        "epoch_ratio": trained / sum(len(c) for c in full["curves"]),
        "best": max(kept),
        "gap_points": (max(full["values"]) - max(kept)) * 100,
    }


def replay_all(path: Path) -> int:
    data = json.loads(path.read_text())
    full = data["results"][0]
    if not full.get("curves") or len(full["curves"]) != len(full["values"]):
        raise SystemExit(f"{path}: no per-epoch curves of an unpruned study to replay")
    # what the curves' trials trained (Hyperband's max_resource)
    epochs = data["settings"]["epochs"]
    rows = [replay(full, p, epochs) for p in CANDIDATES]
    print(
        f"unpruned: {sum(len(c) for c in full['curves'])} epochs, best {max(full['values']):.4f}\n"
    )
    print(f"{'pruner':<62} {'epochs':>6} {'ratio':>6} {'best':>7} {'gap pts':>8}")
    for r in rows:
        ok = "  <- meets both" if r["epoch_ratio"] <= 0.40 and r["gap_points"] <= 1 else ""
        name = ", ".join(f"{k}={v}" for k, v in r["pruner"].items())
        print(
            f"{name:<62} {r['epochs']:>6} {r['epoch_ratio']:>6.2f} {r['best']:>7.4f} "
            f"{r['gap_points']:>+8.2f}{ok}"
        )
    write_json_atomic(path, data | {"replays": rows})
    print(f"\nwritten {path} (replays)")
    return 0


SAME = ("trials", "epochs", "max_faces", "seed")


def saved_unpruned(path: Path, args: argparse.Namespace) -> dict:
    """The unpruned study of an earlier run with the same settings (training is deterministic)."""
    try:
        data = json.loads(path.read_text())
        full, settings = data["results"][0], data["settings"]
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise SystemExit(f"error: {path}: not a JSON written by this benchmark ({e})") from None
    if full.get("pruner") != "none":
        raise SystemExit(f"error: {path}: its first study is not the unpruned one")
    differ = [
        f"{k} {settings.get(k)} (here {vars(args)[k]})"
        for k in SAME
        if settings.get(k) != vars(args)[k]
    ]
    if differ:
        raise SystemExit(
            f"error: {path}: another setting: {', '.join(differ)}; run without --unpruned"
        )
    print(
        f"unpruned study from {path} ({full['epochs']} epochs, {full['wall_s'] / 60:.1f} min when run)"
    )
    return full


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    # 20: with 10-epoch trials no Optuna pruner met both goals here (README, Benchmarks)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--max-faces", type=int, default=2000, help="faces of the bundled sample to use"
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="the sampler's seed: another seed, other trials"
    )
    parser.add_argument(
        "--pruner",
        default="median",
        choices=["successive_halving", "hyperband", "median"],
        help="the kind; its settings are experiments/sweep.yaml's",
    )
    parser.add_argument(
        "--unpruned",
        type=Path,
        help="reuse the unpruned study of this earlier JSON (same settings)",
    )
    parser.add_argument("--json", default="benchmarks/results/sweep_pruning.json")
    parser.add_argument(
        "--replay", action="store_true", help="replay pruners on --json's unpruned curves"
    )
    args = parser.parse_args()
    if args.replay:
        return replay_all(Path(args.json))

    results = [saved_unpruned(args.unpruned, args)] if args.unpruned else []
    for pruner in ({"kind": "none"}, {"kind": args.pruner})[len(results) :]:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"sweep with pruner {pruner['kind']} ...", flush=True)
            results.append(run_sweep(pruner, args, Path(tmp)))
    full, pruned = results
    same = full["params"] == pruned["params"]
    ratio = pruned["epochs"] / full["epochs"]
    gap = (full["best_val_macro_f1"] - pruned["best_val_macro_f1"]) * 100
    print(
        f"\n{'pruner':<10} {'trials':>6} {'pruned':>6} {'epochs':>6} {'best val macro-F1':>18} {'wall s':>8}"
    )
    for r in results:
        print(
            f"{r['pruner']:<10} {r['trials']:>6} {r['pruned']:>6} {r['epochs']:>6} {r['best_val_macro_f1']:>18.4f} "
            f"{r['wall_s']:>8.0f}"
        )
    print(
        f"\nepochs with pruning / without: {ratio:.2f} (goal <= 0.40); best value gap: {gap:+.2f} "
        f"points (goal <= 1); same trials in both: {same}"
    )
    out = write_json_atomic(
        Path(args.json),
        {
            # --unpruned is a Path: the settings as JSON can hold them
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "results": results,
            "epoch_ratio": ratio,
            "best_gap_points": gap,
            "same_trials": same,
        },
    )
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
