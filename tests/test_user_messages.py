"""What a new user meets: progress in logs, skip messages, loose-photo failures, "not a run", `score`, help texts."""

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from maskcls.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
SMALL = [
    "model.name=test_efficientnet",
    "model.pretrained=none",
    "data.image_size=[32, 24]",
    "train.epochs=2",
    "cv.folds=2",
    "train.early_stopping_patience=0",
]


def run_cli(*args, columns=80):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})


@pytest.fixture(scope="module")
def logged_run(demo_dir, tmp_path_factory):
    """A 2-fold, 2-epoch run trained through the CLI as in a log (not a terminal), one photo missing and skipped."""
    root = tmp_path_factory.mktemp("logged")
    train = root / "train"
    shutil.copytree(demo_dir / "train", train)
    first_person = sorted((train / "images").iterdir())[0]
    (first_person / "mask1.jpg").unlink()
    args = ["train", "--data", train, "--out", root / "run", "--on-bad-image", "skip"]
    for override in SMALL:
        args += ["--set", override]
    result = run_cli(*args, columns=200)
    assert result.exit_code == 0, result.output
    return root / "run", result.output


def test_training_in_a_log_prints_one_line_per_epoch_per_fold_and_no_bars(logged_run):
    run_dir, output = logged_run
    assert "\r" not in output and "\x1b" not in output
    epoch_lines = [line for line in output.splitlines() if "· epoch " in line]
    assert [line.split(" · ")[:2] for line in epoch_lines] == [
        [f"train {run_dir}: fold {fold} [{fold + 1}/2]", f"epoch {epoch}/2"] for fold in range(2) for epoch in (1, 2)
    ]
    assert all(
        "ETA" in line and "elapsed" in line and "val macro f1" in line and "best val macro F1" in line
        for line in epoch_lines
    )
    assert sum(" · done in " in line for line in output.splitlines()) == 2
    assert any(line.startswith("decoding ") and "(100%)" in line for line in output.splitlines())


def test_skipped_training_photos_are_counted_and_their_list_named(logged_run):
    run_dir, output = logged_run
    assert f"1 problem photo(s) or row(s) left out (--on-bad-image skip); listed in {run_dir / 'skipped.csv'}" in output
    assert f"1 problem photo(s) or row(s) were left out of training; listed in {run_dir}/skipped.csv" in output
    assert json.loads((run_dir / "summary.json").read_text())["skipped_images"] == 1
    assert len(pd.read_csv(run_dir / "skipped.csv")) == 1


def test_loose_photos_that_fail_get_their_own_section_and_exit_status(logged_run, demo_dir, tmp_path):
    run_dir, _ = logged_run
    people = sorted((demo_dir / "train" / "images").iterdir())
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("not a photo")
    photos = [people[1] / "normal.jpg", people[2] / "normal.jpg", tmp_path / "missing.jpg", text_file]
    result = run_cli("predict", "--run", run_dir, *photos, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "error: 2 of 4 photo(s) could not be classified" in result.output
    assert (
        f"{people[1].name}/normal.jpg" in result.output and f"{people[2].name}/normal.jpg" in result.output
    )  # told apart at 80 columns
    assert (
        "not classified" in result.output and "file not found" in result.output and "not an image file" in result.output
    )
    lines = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert lines[0] == "file,name,class,mask,gender,age,probability,error"
    classes = [line.split(",")[2] for line in lines[1:]]
    assert classes[2:] == ["", ""] and all(value.isdigit() for value in classes[:2])  # integers, never 10.0


def test_loose_photos_all_readable_exit_zero(logged_run, demo_dir):
    run_dir, _ = logged_run
    photo = sorted((demo_dir / "train" / "images").iterdir())[1] / "mask2.jpg"
    result = run_cli("predict", "--run", run_dir, photo)
    assert result.exit_code == 0, result.output
    assert "mask2.jpg" in result.output and "not classified" not in result.output


def test_a_folder_that_is_not_a_run_is_told_apart_from_an_unfinished_run(logged_run, demo_dir, tmp_path):
    run_dir, _ = logged_run
    as_run = run_cli("predict", "--run", demo_dir / "eval", "--data", demo_dir / "eval")
    assert (
        as_run.exit_code == 2
        and "is not a maskcls run" in as_run.output
        and "looks like an eval folder" in as_run.output
    )
    assert "--resume" not in as_run.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "is not a maskcls run" in run_cli("predict", "--run", empty, "--data", demo_dir / "eval").output
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.yaml", "run.json"):
        shutil.copy(run_dir / name, unfinished / name)
    result = run_cli("predict", "--run", unfinished, "--data", demo_dir / "eval", columns=300)
    assert (
        result.exit_code == 2
        and "is an unfinished run" in result.output
        and f"maskcls train --resume {unfinished}" in result.output
    )


def test_predict_skips_say_so_once_per_photo_and_name_the_right_list(logged_run, demo_dir, tmp_path):
    run_dir, _ = logged_run
    evaluation = tmp_path / "eval"
    shutil.copytree(demo_dir / "eval", evaluation)
    missing = pd.read_csv(evaluation / "info.csv")["ImageID"][0]
    (evaluation / "images" / missing).unlink()
    refused = run_cli("predict", "--run", run_dir, "--data", evaluation, "--out", tmp_path / "p", columns=300)
    assert (
        refused.exit_code == 2
        and "listed in predict_skipped.csv" in refused.output
        and "skipped.csv)" not in refused.output.replace("predict_skipped.csv)", "")
    )
    result = run_cli(
        "predict",
        "--run",
        run_dir,
        "--data",
        evaluation,
        "--out",
        tmp_path / "p",
        "--on-bad-image",
        "skip",
        columns=300,
    )
    assert result.exit_code == 0, result.output
    assert (
        f"1 photo(s) could not be read and got the fallback class; listed in {tmp_path / 'p' / 'predict_skipped.csv'}"
        in result.output
    )
    skipped = pd.read_csv(tmp_path / "p" / "predict_skipped.csv")
    assert len(skipped) == 1 and "missing" in skipped["reason"][0]
    assert json.loads((tmp_path / "p" / "predict.json").read_text())["skipped"] == 1
    model_lines = [line for line in result.output.splitlines() if "· model " in line]
    assert [line.split(" · ")[1] for line in model_lines] == ["model 1/2", "model 2/2"] and "\r" not in result.output
    again = run_cli("predict", "--run", run_dir, "--data", demo_dir / "eval", "--out", tmp_path / "p", "--quiet")
    assert (
        again.exit_code == 0 and not (tmp_path / "p" / "predict_skipped.csv").exists()
    )  # no stale list from the earlier call


@pytest.fixture
def answers(demo_dir, tmp_path):
    table = pd.read_csv(demo_dir / "eval_answers.csv", dtype={"ImageID": str})
    assert list(table.columns[:2]) == ["ImageID", "label"]
    return table


def test_score_reads_answers_as_label_or_as_the_competitions_ans(answers, tmp_path):
    submission = tmp_path / "a-rather-long-folder-name-for-the-submission-file" / "submission.csv"
    submission.parent.mkdir()
    answers.rename(columns={"label": "ans"}).to_csv(submission, index=False)
    label_csv, ans_csv = tmp_path / "answers_label.csv", tmp_path / "answers_ans.csv"
    answers.to_csv(label_csv, index=False)
    answers.rename(columns={"label": "ans"}).to_csv(ans_csv, index=False)
    for answer_file in (label_csv, ans_csv):
        result = run_cli("score", submission, answer_file)
        assert result.exit_code == 0, result.output
        scored = next(line for line in result.output.splitlines() if "photos_scored" in line)
        assert "macro_f1" in result.output and "1.0000" in result.output and f" {len(answers)} " in scored
        assert str(submission) in result.output  # the path is printed whole, never wrapped mid-word


def test_score_refuses_a_partial_submission_unless_asked(answers, tmp_path):
    answers_csv = tmp_path / "answers.csv"
    answers.to_csv(answers_csv, index=False)
    partial = answers.head(len(answers) - 3).rename(columns={"label": "ans"})
    partial = pd.concat([partial, pd.DataFrame({"ImageID": ["stranger.jpg"], "ans": [0]})])
    submission = tmp_path / "submission.csv"
    partial.to_csv(submission, index=False)
    refused = run_cli("score", submission, answers_csv, columns=400)
    assert refused.exit_code == 2
    assert (
        f"covers {len(answers) - 3} of the {len(answers)} photos" in refused.output
        and "1 ImageID(s) that" in refused.output
        and "--allow-partial" in refused.output
    )
    allowed = run_cli("score", submission, answers_csv, "--allow-partial", columns=200)
    assert allowed.exit_code == 0, allowed.output
    assert "answers_not_submitted" in allowed.output and "unknown_image_ids" in allowed.output


def test_score_names_a_bad_class_value(answers, tmp_path):
    submission = tmp_path / "submission.csv"
    answers.rename(columns={"label": "ans"}).assign(ans="ten").to_csv(submission, index=False)
    result = run_cli("score", submission, tmp_path / "missing.csv", columns=300)
    assert result.exit_code == 2 and "is not a class 0..17" in result.output


def test_help_reads_for_users():
    top = run_cli("--help", columns=100)
    assert top.exit_code == 0 and "First steps" in top.output and "maskcls demo-data" in top.output
    assert "Each sub-command parses" not in top.output
    from maskcls import __version__

    assert run_cli("--version").output.strip() == f"maskcls {__version__}"
    commands = [name for name in app.registered_commands]
    assert len(commands) >= 12
    names = [[command.name or command.callback.__name__.replace("_", "-")] for command in commands]
    for group in app.registered_groups:
        names += [
            [group.name, command.name or command.callback.__name__.replace("_", "-")]
            for command in group.typer_instance.registered_commands
        ]
    for name in names:
        text = run_cli(*name, "--help", columns=120).output
        assert "Example" in text, name
        assert "<bool>" not in text, name
    train_help = run_cli("train", "--help", columns=120).output
    assert train_help.count("Required unless --resume") == 2 and "KEY=VALUE" in train_help


def test_an_unknown_model_name_suggests_the_nearest_before_any_work(demo_dir, tmp_path):
    result = run_cli(
        "train",
        "--data",
        demo_dir / "train",
        "--out",
        tmp_path / "r",
        "--set",
        "model.name=resnet1",
        "--quiet",
        columns=300,
    )
    assert result.exit_code == 2
    assert "unknown timm model 'resnet1'; did you mean resnet18" in result.output
    assert not (tmp_path / "r").exists()
