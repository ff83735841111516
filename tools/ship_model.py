"""Rebuild the shipped model and its card from a finished MLflow run of a FER-2013 experiment (fer2013, fer2013-fast, ...).

    python tools/ship_model.py RUN_ID [--tracking-uri URI] [--shared ../shared/data] [--out DIR]
        [--tta none|flip|tencrop|dense|warped]

Writes workbench/shipped/model.keras, card.json and MODEL_CARD.md (each to a temporary file, then
renamed). It checks that the saved file gives the run's PrivateTest figure again, then scores the
file with the views predict will use (`--tta`, default the run's) on every evaluation set
(workbench/serve/evaluation.py: PrivateTest, ExpW, CK+48, FER+) and on the bundled sample's
PrivateTest faces (which tests/test_shipped.py recomputes), and names the teacher of a distilled
model with its own PrivateTest figure.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile
from pathlib import Path

from workbench.cli import quiet_tensorflow

quiet_tensorflow()

import mlflow  # noqa: E402

from workbench import CLASS_NAMES  # noqa: E402
from workbench.core.models import inputs  # noqa: E402, F401  (registers FaceCrop for the loader)
from workbench.core.tta import TTA_MODES  # noqa: E402
from workbench.files import atomic_path, write_json_atomic, write_text_atomic  # noqa: E402
from workbench.serve import shipped  # noqa: E402
from workbench.serve.evaluation import evaluation_sets, scored  # noqa: E402


def evaluated(model, tta: str, shared: Path) -> tuple[dict, dict]:
    """The saved file's scores on every evaluation set, and FER+'s agreement with FER-2013."""
    if not shared.is_dir():
        sys.exit(f"{shared}: no such folder (the real data: --shared DIR)")
    size, channels = int(model.input_shape[1]), int(model.input_shape[-1])
    sets, ferplus = evaluation_sets(shared, size, channels)
    return {name: r for name, (r, _) in scored(model, tta, sets).items()}, ferplus


def evaluation_rows(evaluation: dict) -> str:
    return "\n".join(
        f"| {name} | {r['faces']:,} | {r['accuracy']:.4f} [{r['accuracy_ci'][0]:.3f}, "
        f"{r['accuracy_ci'][1]:.3f}] | {r['macro_f1']:.4f} | {r['chance_uniform']:.3f} | "
        f"{r['chance_majority']:.3f} |"
        for name, r in evaluation.items()
    )


def teacher(client, config: dict) -> dict | None:
    """A distilled model's teacher: its run, model and PrivateTest figures (the card reports both)."""
    run_id = (config.get("distill") or {}).get("teacher_run")
    if not run_id:
        return None
    m = client.get_run(run_id).data.metrics
    return {
        "run_id": run_id,
        "model_parameters": int(m["model_parameters"]),
        "accuracy": m["test_accuracy"],
        "accuracy_ci": [m.get("test_accuracy_ci_low"), m.get("test_accuracy_ci_high")],
        "macro_f1": m["test_macro_f1"],
    }


def teacher_line(t: dict | None) -> str:
    if t is None:
        return ""
    return (
        f"\n- **Distilled from** run {t['run_id']} ({t['model_parameters']:,} parameters): PrivateTest "
        f"accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}."
    )


def tested_run(client, run_id: str):
    run = client.get_run(run_id)
    if run.info.status != "FINISHED" or "test_accuracy" not in run.data.metrics:
        sys.exit(f"run {run_id}: not a finished, tested run (status {run.info.status})")
    return run


def checked_file(run, run_tta: str, tta: str, shared: Path, model_file: Path) -> dict:
    """Save the run's model without its optimizer, check that file against the run, score it with
    the views it ships with (`tta`) on every set, then put it in place."""
    model = mlflow.tensorflow.load_model(f"runs:/{run.info.run_id}/model")
    path = run.data.params["data.path"]
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / model_file.name
        shipped.save_without_optimizer(model, candidate)
        saved = shipped.load_model(candidate)
        # The saved file must give the run's own PrivateTest figure, or the card would describe other
        # weights: checked before anything in the output folder is replaced.
        as_run = shipped.sample_check(saved, run_tta, path)
        logged = run.data.metrics["test_accuracy"]
        if abs(as_run["accuracy"] - logged) > 1e-6:
            sys.exit(
                f"{candidate.name}: PrivateTest accuracy {as_run['accuracy']:.6f} from the saved "
                f"file, {logged:.6f} in run {run.info.run_id}: not shipped"
            )
        recomputed = as_run if tta == run_tta else shipped.sample_check(saved, tta, path)
        check = shipped.sample_check(saved, tta)
        evaluation, ferplus = evaluated(saved, tta, shared)
        model_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(model_file) as tmp_model:  # model.tmp.keras: same folder, renamed
            shutil.copyfile(candidate, tmp_model)
    return {
        "sample_check": check,
        "privatetest_recomputed": recomputed,
        "run_check": {"tta": run_tta, "logged_accuracy": logged, "accuracy": as_run["accuracy"]},
        "evaluation": evaluation,
        "ferplus_agreement": ferplus,
    }


def test_section(recomputed: dict, tta: str) -> dict:
    """The card's PrivateTest figures: the saved file's own, with the views predict will use."""
    return {
        "split": f"PrivateTest ({recomputed['faces']:,} faces)",
        "accuracy": recomputed["accuracy"],
        "macro_f1": recomputed["macro_f1"],
        "per_class_f1": recomputed["per_class_f1"],
        "chance": recomputed["chance_uniform"],
        "majority": recomputed["chance_majority"],
        "tta": tta,
    }


def card_for(run, config: dict, tta: str, model_file: Path, scores: dict, teacher_row, uri: str):
    m, p = run.data.metrics, run.data.params
    data = config["data"]
    return {
        "model": f"{config['model']['name']} ({int(m['model_parameters']):,} parameters)",
        "file": model_file.name,
        "file_bytes": model_file.stat().st_size,
        "input": f"{data['image_size']}x{data['image_size']} "
        f"{'grey' if data['channels'] == 1 else 'RGB'}, pixels 0-255",
        "classes": list(CLASS_NAMES),
        "data": {
            "name": "FER-2013",
            "path": p.get("data.path"),
            "digest": run.data.tags.get("dataset_digest"),
            "protocol": "train on Training, pick the epoch on PublicTest, test once on PrivateTest",
        },
        "test": test_section(scores["privatetest_recomputed"], tta),
        "training": {
            "epochs": int(m["epochs_run"]),
            "best_epoch": int(m["best_epoch"]) + 1,
            "train_seconds": m.get("train_seconds"),
            "images_per_second": m.get("train_images_per_second"),
        },
        **scores,
        "teacher": teacher_row,
        "mlflow": {
            "run_id": run.info.run_id,
            "tracking_uri": uri,
            "git_commit": run.data.tags.get("git_commit"),
        },
        "date": datetime.date.today().isoformat(),
        "config": config,
        "rebuild": f"python -m workbench.run {config['name']}, then python tools/ship_model.py <run id>",
    }


def run_views_line(check: dict, tta: str) -> str:
    if check["tta"] == tta:
        return ""
    return (
        f"\n  Its run, tested with {check['tta']} views: accuracy {check['logged_accuracy']:.4f}."
    )


def card_markdown(card: dict) -> str:
    t, check, name = card["test"], card["sample_check"], card["config"]["name"]
    tta = t["tta"]
    rows = "\n".join(f"| {c} | {v:.3f} |" for c, v in t["per_class_f1"].items())
    return f"""# Model card: the shipped FER model

- **Model**: {card["model"]}, {card["input"]}; file `{card["file"]}` ({card["file_bytes"] / 1024:.0f} KB).
- **Trained by**: `python -m workbench.run {name}` (experiments/{name}.yaml; the whole config is in
  card.json), {card["training"]["epochs"]} epochs, best PublicTest epoch {card["training"]["best_epoch"]}.
- **Data**: FER-2013 ({card["data"]["path"]}, digest {card["data"]["digest"]}): {card["data"]["protocol"]}.
- **PrivateTest** (3,589 faces{f", {tta} test-time augmentation" if tta != "none" else ""}): accuracy **{t["accuracy"]:.4f}**,
  macro-F1 **{t["macro_f1"]:.4f}** (chance {t["chance"]:.3f} uniform, {t["majority"]:.3f} always the commonest class).{run_views_line(card["run_check"], tta)}
- **Check on the bundled sample** (its {check["faces"]} PrivateTest faces, data digest {check["digest"]}):
  accuracy {check["accuracy"]:.4f}, macro-F1 {check["macro_f1"]:.4f}; recomputed by the tests.
- **MLflow run**: {card["mlflow"]["run_id"]} ({card["mlflow"]["tracking_uri"]}), commit {card["mlflow"]["git_commit"]}; built {card["date"]}.{teacher_line(card["teacher"])}
- **Limits**: FER-2013 is 48x48 grey web faces, mostly frontal; accuracy drops on other data (see the
  README's cross-dataset check on ExpW); not for decisions about people.

| class | PrivateTest F1 |
|---|---|
{rows}

Recomputed from the file ({tta} test-time views; 95% bootstrap intervals; see
workbench/serve/evaluation.py for each set):

| data | faces | accuracy [95%] | macro-F1 | chance | commonest class |
|---|---|---|---|---|---|
{evaluation_rows(card["evaluation"])}

Rebuild: {card["rebuild"]}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--tracking-uri", default=None, help="default: the workbench's store")
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"), help="the real data")
    parser.add_argument("--out", type=Path, default=shipped.SHIPPED_DIR, help="where to write")
    parser.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="the test-time views predict uses with it (default: the run's; fewer views predict "
        "faster, and the card's figures are recomputed with them)",
    )
    args = parser.parse_args()
    from workbench.tracking.runs import logged_config
    from workbench.tracking.store import tracking_uri

    uri = args.tracking_uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    run = tested_run(client, args.run_id)
    config = logged_config(args.run_id, f"run {args.run_id}").model_dump(mode="json")
    model_file = args.out / shipped.MODEL_FILE.name
    run_tta = config["train"]["tta"]
    tta = args.tta or run_tta
    scores = checked_file(run, run_tta, tta, args.shared, model_file)
    card = card_for(run, config, tta, model_file, scores, teacher(client, config), uri)
    write_json_atomic(args.out / shipped.CARD_FILE.name, card)
    write_text_atomic(args.out / "MODEL_CARD.md", card_markdown(card))
    print(f"written {model_file} ({card['file_bytes'] / 1024:.0f} KB), card.json, MODEL_CARD.md")
    print(f"sample check: {scores['sample_check']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
