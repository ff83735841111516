from pathlib import Path

import pytest

from workbench.config import load_config
from workbench.core.settings import ORIGINAL_PROTOCOL
from workbench.errors import WorkbenchError

REPO = Path(__file__).resolve().parent.parent


def test_baseline_loads_with_reference_model():
    cfg = load_config("baseline")
    assert cfg.name == "baseline"
    assert cfg.model.name == "reference" and cfg.model.filters is None  # the model's own widths:
    from workbench.core.models import DEFAULT_FILTERS

    assert DEFAULT_FILTERS["reference"] == (32, 64, 128, 256, 512)
    assert cfg.model.dense_units == 1024
    assert cfg.protocol == "split-then-resample"
    assert cfg.data.path is None  # the bundled sample


def test_set_overrides_are_typed_and_nested():
    cfg = load_config(
        "baseline",
        [
            "train.epochs=3",
            "balance.smote=true",
            "model.filters=[8,16]",
            "data.path=/x/y.csv",
            "train.learning_rate=3e-4",
        ],
    )
    assert cfg.train.epochs == 3 and cfg.balance.smote is True
    assert cfg.model.filters == [8, 16]
    assert cfg.data.path == "/x/y.csv"
    assert cfg.train.learning_rate == pytest.approx(3e-4)


def test_flat_params_cover_every_key():
    flat = load_config("baseline").flat()
    assert (
        flat["train.epochs"] == load_config("baseline").train.epochs
        and flat["model.name"] == "reference"
        and flat["augment.strength"] == 0.0
        and "data.min_confidence" in flat
    )


def test_purpose_decides_what_a_run_does_and_is_part_of_the_config():
    plain = load_config("baseline").purpose
    assert (plain.role, plain.evaluate_on, plain.light, plain.resumable) == (
        "experiment",
        "test",
        False,
        True,
    )
    trial = load_config("baseline", ["purpose.role=trial"]).purpose
    assert (trial.evaluate_on, trial.light, trial.resumable) == ("val", True, False)
    arm = load_config("baseline", ["purpose.role=arm", "purpose.parent_run_id=abc"])
    assert (arm.purpose.evaluate_on, arm.purpose.light, arm.purpose.resumable) == (
        "test",
        False,
        True,
    )
    # logged with the rest of the config (tags as tags, not params)
    assert arm.flat()["purpose.role"] == "arm" and "purpose.parent_run_id" in arm.flat()
    with pytest.raises(WorkbenchError, match="purpose.role"):
        load_config("baseline", ["purpose.role=final"])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.epoch=3", "unknown key 'train.epoch'"),
        ("trian.epochs=3", "unknown key 'trian'"),
        ("augment.strength=1.5", "augment.strength"),
        ("train.epochs=zero", "train.epochs"),
        ("protocol=smote-first", "protocol"),
        ("split.val_fraction=0.6", "split.val_fraction"),
    ],
)
def test_bad_values_give_one_line_errors_naming_the_field(override, expected):
    with pytest.raises(WorkbenchError) as err:
        load_config("baseline", [override])
    message = str(err.value)
    assert expected in message and "\n" not in message


def test_fractions_must_leave_training_data():
    with pytest.raises(WorkbenchError, match="below 0.9"):
        load_config("baseline", ["split.val_fraction=0.45", "split.test_fraction=0.45"])


def test_malformed_set_and_unknown_experiment():
    with pytest.raises(WorkbenchError, match="expected key=value"):
        load_config("baseline", ["train.epochs"])
    with pytest.raises(WorkbenchError) as err:
        load_config("baseline", ["train.epochs.x=1"])
    assert str(err.value) == "--set 'train.epochs.x=1': epochs is not a section"
    with pytest.raises(
        WorkbenchError,
        match=r"does-not-exist: no such experiment in \./experiments or the shipped ones "
        r"\(experiments: baseline, fer2013, fer2013-fast, fer2013-mini-xception, fer2013-original, "
        r"fer2013-student, "
        r"reproduce-65; sweeps: sweep, sweep-fer2013, sweep-student\)",
    ):
        load_config("does-not-exist")


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1,\n")
    with pytest.raises(WorkbenchError, match="not valid YAML"):
        load_config(str(bad))
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(WorkbenchError, match="mapping"):
        load_config(str(listy))


def test_original_protocol_name_is_explicit(tmp_path):
    path = tmp_path / "orig.yaml"
    path.write_text(f"protocol: {ORIGINAL_PROTOCOL}\n")
    assert load_config(str(path)).protocol == ORIGINAL_PROTOCOL
    assert load_config(str(path)).name == "orig"


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from workbench.files import atomic_path, write_text_atomic

    target = write_text_atomic(tmp_path / "sub" / "report.html", "complete")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            # writers pick the format by suffix
            assert tmp.suffix == ".html" and tmp.parent == target.parent
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "complete"
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temp file left behind


def test_a_user_experiment_file_wins_over_the_shipped_one(tmp_path, monkeypatch):
    import yaml

    from workbench.config import load_config

    monkeypatch.chdir(tmp_path)
    shipped = load_config("baseline")
    (tmp_path / "experiments").mkdir()
    tree = yaml.safe_load(shipped.to_yaml()) | {"name": "baseline"}
    tree["train"]["epochs"] = shipped.train.epochs + 7
    (tmp_path / "experiments" / "baseline.yaml").write_text(yaml.safe_dump(tree))
    assert load_config("baseline").train.epochs == shipped.train.epochs + 7
    # not overridden here: the shipped one
    assert load_config("fer2013").model.name == "vgg"


def test_text_keys_take_the_set_value_as_given():
    cfg = load_config(
        "baseline",
        ["data.path=/data/set #2/x.csv", "data.cache_dir=~", "tracking.run_name=a: b #c"],
    )
    assert cfg.data.path == "/data/set #2/x.csv"
    assert cfg.data.cache_dir == "~"  # not YAML's null, which would mean the default
    assert cfg.tracking.run_name == "a: b #c"
    assert load_config("baseline", ["data.path=null"]).data.path is None
    assert load_config("baseline", ["train.epochs=3"]).train.epochs == 3  # numbers stay YAML


def test_a_tilde_path_is_the_home_folder_not_the_bundled_sample(tmp_path, monkeypatch):
    from workbench.data import load_faces

    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config("baseline", ["data.path=~", f"data.cache_dir={tmp_path / 'c'}"])
    with pytest.raises(WorkbenchError, match=f"{tmp_path}: no images found"):
        load_faces(cfg.data, cfg.seed)


@pytest.mark.parametrize("text", ["", "# nothing yet\n"])
def test_an_empty_experiment_file_is_refused(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(WorkbenchError, match=f"{path}: empty; an experiment names at least one"):
        load_config(str(path))


def test_an_unknown_command_is_named(capsys):
    from workbench.cli import main

    assert main(["trian"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown command 'trian'; commands: run, ")
    assert main(["sweeep"]) == 2
    assert "unknown command 'sweeep' (did you mean 'sweep'?)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error",
    [
        OSError(28, "No space left on device", "/store/x.h5"),
        RuntimeError("(sqlite3.OperationalError) database or disk is full\n[SQL: UPDATE runs]"),
    ],
)
def test_a_full_disk_deep_in_a_library_is_one_line(error, capsys):
    from workbench.cli import user_errors

    with pytest.raises(SystemExit) as exit_, user_errors():
        raise error
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and line.startswith("error: no space left on device")


def test_a_missing_fer2013_says_where_to_get_it_and_which_set(tmp_path, monkeypatch):
    from workbench.data import load_faces

    monkeypatch.chdir(tmp_path)
    cfg = load_config("fer2013")
    with pytest.raises(WorkbenchError) as err:
        load_faces(cfg.data, cfg.seed)
    assert str(err.value).startswith("data.path: fer2013.csv.gz does not exist (FER-2013 is ")
    assert "Kaggle" in str(err.value) and "--set data.path=" in str(err.value)


def test_sigterm_that_surfaces_as_another_error_is_still_a_stop(capsys):
    import os
    import signal
    import time

    from workbench.cli import user_errors
    from workbench.errors import Terminated

    with pytest.raises(SystemExit) as exit_, user_errors():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Terminated:  # what TensorFlow does to it when the signal lands while it traces
            raise RuntimeError("graph tracing failed") from None
    assert exit_.value.code == 143 and capsys.readouterr().err.strip() == "terminated"
    with pytest.raises(SystemExit) as again, user_errors():  # a new command: no stop pending
        raise OSError(28, "No space left on device", "/x")
    assert again.value.code == 2


@pytest.mark.parametrize(
    "path", sorted(p for p in (REPO / "experiments").glob("*.yaml") if "sweep" not in p.name)
)
def test_every_shipped_experiment_loads(path):
    cfg = load_config(path.stem)
    assert cfg.name == path.stem


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("sweep*.yaml")))
def test_every_shipped_sweep_names_real_keys_of_its_experiment(path):
    from workbench.config import load_tree
    from workbench.studies.search_space import check_space, load_spec

    spec, found = load_spec(path.stem)
    check_space(spec, load_tree(spec.experiment, [])[0], found)
