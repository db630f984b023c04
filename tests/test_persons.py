"""Person-consistent prediction: mask assignment under the 5/1/1 quota, combining a group's evidence,
grouping photos with planted persons (structured and by threshold), and the `group` / `predict --persons`
commands."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import NO_TORCH, invoke
from PIL import Image
from typer.testing import CliRunner

from maskcls.cli import app
from maskcls.core.labels import STEM_TO_MASK, encode, head_probabilities
from maskcls.core.tables import PROB_COLUMNS
from maskcls.ensemble.person_consistency import (
    PERSON_COLUMNS,
    GroupsError,
    assign_masks,
    consistency_scores,
    mask_quota,
    person_consistent_probs,
    read_groups,
)
from maskcls.persons.features import colour_features
from maskcls.persons.group import choose_threshold, cluster_tree, cut_tree, embed, grouping_scores, structured_groups

STEMS = list(STEM_TO_MASK)


def test_mask_assignment_keeps_the_quota_and_is_optimal():
    rng = np.random.default_rng(0)
    quota = mask_quota(7)
    assert quota.tolist() == [5, 1, 1]
    for _ in range(20):
        probs = rng.dirichlet(np.ones(3) * 0.7, size=7)
        assigned = assign_masks(probs, quota)
        assert np.bincount(assigned, minlength=3).tolist() == [5, 1, 1]
        best = max(
            np.log(probs[np.arange(7), list(order)]).sum()
            for normal, incorrect in itertools.permutations(range(7), 2)
            for order in [[2 if i == normal else 1 if i == incorrect else 0 for i in range(7)]]
        )
        assert np.log(probs[np.arange(7), assigned]).sum() == pytest.approx(best)


def test_person_consistent_probabilities():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(18), size=36)
    groups = np.repeat(np.arange(5), 7).tolist() + [5]  # five groups of 7 and a photo alone
    probs[3] = np.nan  # an unreadable photo in group 0
    consistent = person_consistent_probs(probs, groups, group_size=7)
    readable = np.isfinite(consistent).all(axis=1)
    assert readable.tolist() == [i != 3 for i in range(36)]
    assert np.allclose(consistent[readable].sum(axis=1), 1)
    gender_age = consistent.reshape(-1, 3, 6).sum(axis=1)
    for group in range(6):
        rows = [i for i, g in enumerate(groups) if g == group and i != 3]
        assert np.allclose(gender_age[rows], gender_age[rows[0]])  # one gender x age distribution per group
    rows = np.arange(7, 14)  # a complete group: the mean log marginal, and masks assigned 5/1/1
    mean_log = np.log(probs[rows].reshape(-1, 3, 6).sum(axis=1)).mean(axis=0)
    assert np.allclose(gender_age[7], np.exp(mean_log) / np.exp(mean_log).sum())
    for group in range(1, 5):
        masks = head_probabilities(consistent[group * 7 : (group + 1) * 7])["mask"]
        assert np.bincount(masks.argmax(axis=1), minlength=3).tolist() == [5, 1, 1] and np.allclose(
            masks.max(axis=1), 1.0
        )
    joint = probs[:3].reshape(
        -1, 3, 6
    )  # group 0 has 6 readable photos: no quota, each photo keeps p(mask | gender x age)
    assert np.allclose(consistent[:3].reshape(-1, 3, 6), joint / joint.sum(axis=1, keepdims=True) * gender_age[0])
    assert np.allclose(consistent[35], probs[35])  # alone: unchanged


def _planted_oof(persons: int = 60, seed: int = 0) -> pd.DataFrame:
    """OOF-like rows whose gender/age evidence is right more often than not, photo by photo, independently."""
    rng = np.random.default_rng(seed)
    rows = []
    for person in range(persons):
        gender, age = rng.integers(2), rng.integers(3)
        for stem in STEMS:
            mask = int(STEM_TO_MASK[stem])
            probs = np.full((3, 2, 3), 0.01)
            guess_gender = gender if rng.random() < 0.7 else 1 - gender
            guess_age = age if rng.random() < 0.6 else rng.integers(3)
            probs[mask, guess_gender, guess_age] += 1.0
            probs[:, :, :] += rng.random((3, 2, 3)) * 0.3
            probs[mask] += 0.5
            rows.append(
                {
                    "image_id": f"{person}/{stem}",
                    "person_id": f"p{person}",
                    "fold": person % 3,
                    "label": encode(mask, gender, age),
                    **dict(zip(PROB_COLUMNS, (probs / probs.sum()).ravel(), strict=False)),
                }
            )
    return pd.DataFrame(rows)


def test_consistency_helps_where_photo_evidence_is_independent():
    oof = _planted_oof()
    scores = consistency_scores(oof, oof["person_id"].to_numpy(), group_size=7)
    assert set(scores) == {"without", "known_persons", "clustered_groups"}
    assert scores["known_persons"]["gender_accuracy"] > scores["without"]["gender_accuracy"] + 0.1
    assert scores["known_persons"]["age_accuracy"] > scores["without"]["age_accuracy"] + 0.1
    assert scores["known_persons"]["mask_accuracy"] >= scores["without"]["mask_accuracy"]
    singles = consistency_scores(oof, np.arange(len(oof)))[
        "clustered_groups"
    ]  # every photo its own group: nothing changes
    assert singles["macro_f1"] == pytest.approx(scores["without"]["macro_f1"])


def _planted_embedding(persons: int, rng, photos_per_person=7, spread: float = 0.15):
    centres = rng.normal(size=(persons, 12))
    person = np.repeat(np.arange(persons), photos_per_person)
    return {"colour": centres[person] + rng.normal(scale=spread, size=(len(person), 12))}, person


def test_structured_grouping_recovers_planted_persons_with_one_normal_and_one_incorrect_each():
    rng = np.random.default_rng(2)
    blocks, person = _planted_embedding(40, rng)
    stems = np.tile(STEMS, 40)
    truth = np.array([STEM_TO_MASK[s] for s in stems])
    mask_probs = np.clip(np.eye(3)[truth] * 0.9 + rng.random((len(truth), 3)) * 0.1, 1e-3, None)
    order = rng.permutation(len(person))  # photos arrive shuffled, as in info.csv
    groups = structured_groups(embed({"colour": blocks["colour"][order]}), mask_probs[order], 7)
    assert np.bincount(groups).tolist() == [7] * 40
    assert grouping_scores(person[order], groups)["exact_persons"] == 1.0
    for group in range(40):
        kinds = truth[order][groups == group]
        assert sorted(kinds.tolist()) == [0, 0, 0, 0, 0, 1, 2]
    with pytest.raises(GroupsError, match="multiple of 7"):
        structured_groups(embed(blocks)[:-1], mask_probs[:-1], 7)


def test_threshold_grouping_with_a_threshold_chosen_on_other_chunks():
    rng = np.random.default_rng(3)
    chunks = []
    for _ in range(3):
        sizes = rng.integers(4, 8, size=25)  # persons with 4..7 photos: no structure to lean on
        person = np.repeat(np.arange(25), sizes)
        centres = rng.normal(size=(25, 12))
        chunks.append((embed({"colour": centres[person] + rng.normal(scale=0.15, size=(len(person), 12))}), person))
    trees = [cluster_tree(x) for x, _ in chunks]
    overall, held_out = choose_threshold(trees, [p for _, p in chunks])
    assert len(held_out) == 3 and all(t > 0 for t in held_out)
    for (_, person), tree, threshold in zip(chunks, trees, held_out, strict=False):
        scores = grouping_scores(person, cut_tree(tree, threshold, len(person)))
        assert scores["purity"] > 0.95 and scores["completeness"] > 0.95


def test_grouping_scores_by_hand():
    scores = grouping_scores(np.array(list("aaabbc")), np.array([0, 0, 1, 1, 1, 2]))
    assert scores["purity"] == pytest.approx(5 / 6) and scores["completeness"] == pytest.approx(5 / 6)
    assert scores["pairwise_precision"] == pytest.approx(0.5) and scores["pairwise_recall"] == pytest.approx(0.5)
    assert scores["exact_persons"] == pytest.approx(1 / 3) and (scores["persons"], scores["groups"]) == (3, 3)


def test_colour_features_ignore_the_mask_zone():
    rng = np.random.default_rng(4)
    photo = rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    masked = photo.copy()
    masked[24:64] = rng.integers(0, 255, size=(40, 64, 3), dtype=np.uint8)  # rows 3..7 of the 8 x 8 grid
    features = colour_features(np.stack([photo, masked]))
    assert features.shape == (2, 3 * 8 * 3) and np.allclose(features[0], features[1])
    hair = photo.copy()
    hair[:8] = 0
    assert not np.allclose(colour_features(hair[None])[0], features[0])


def _draw(path, person_colours, rng, stem):
    """A 64 x 64 photo: the person's hair (top) and background (sides) colours, a mask drawn anew each time."""
    top, side = person_colours
    pixels = np.empty((64, 64, 3))
    pixels[:] = side
    pixels[:12, 8:56] = top
    mask_colour = rng.integers(0, 255, size=3)
    if stem != "normal":
        pixels[34 if stem != "incorrect_mask" else 44 : 60, 12:52] = mask_colour
    pixels += rng.normal(0, 4, pixels.shape)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=92)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """train/ (30 persons) and eval/ (10 persons, shuffled) in the competition layout, persons planted in colour."""
    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("planted")
    rows, answers = [], []
    (root / "eval" / "images").mkdir(parents=True)
    for number in range(40):
        colours = (rng.integers(0, 255, size=3), rng.integers(0, 255, size=3))
        gender, age = ("male", "female")[number % 2], 20 + 3 * number
        if number < 30:
            folder = root / "train" / "images" / f"{number:06d}_{gender}_Asian_{age}"
            folder.mkdir(parents=True)
            rows.append({"id": f"{number:06d}", "gender": gender, "race": "Asian", "age": age, "path": folder.name})
            for stem in STEMS:
                _draw(folder / f"{stem}.jpg", colours, rng, stem)
        else:
            for stem in STEMS:
                name = f"{rng.integers(1 << 60):x}.jpg"
                _draw(root / "eval" / "images" / name, colours, rng, stem)
                answers.append(
                    {
                        "ImageID": name,
                        "person": number,
                        "stem": stem,
                        "label": encode(int(STEM_TO_MASK[stem]), number % 2, 0 if age < 30 else 1 if age < 60 else 2),
                    }
                )
    pd.DataFrame(rows).to_csv(root / "train" / "train.csv", index=False)
    answers = pd.DataFrame(answers).sample(frac=1.0, random_state=0).reset_index(drop=True)
    answers[["ImageID"]].assign(ans=0).to_csv(root / "eval" / "info.csv", index=False)
    return root, answers


def _fake_run(root, answers, tmp_path):
    """A run directory as far as grouping reads one: run.json, oof.csv, and test_probs.csv for this eval folder."""
    from maskcls.data.layout import read_train

    run = tmp_path / "run"
    run.mkdir()
    manifest, _ = read_train(root / "train")
    (run / "run.json").write_text(json.dumps({"data": str((root / "train").resolve())}))
    rng = np.random.default_rng(6)

    def probs_for(labels):
        probs = np.eye(18)[labels] * 3 + rng.random((len(labels), 18))
        return probs / probs.sum(axis=1, keepdims=True)

    persons = manifest["person_id"].astype(str)
    oof = manifest[["image_id"]].assign(
        person_id=persons, fold=persons.map({p: i % 3 for i, p in enumerate(persons.unique())}), label=manifest["label"]
    )
    pd.concat([oof, pd.DataFrame(probs_for(manifest["label"].to_numpy()), columns=PROB_COLUMNS)], axis=1).to_csv(
        run / "oof.csv", index=False
    )
    pd.concat(
        [
            answers[["ImageID"]].rename(columns={"ImageID": "image_id"}),
            pd.DataFrame(probs_for(answers["label"].to_numpy()), columns=PROB_COLUMNS),
        ],
        axis=1,
    ).to_csv(run / "test_probs.csv", index=False)
    (run / "predict.json").write_text(json.dumps({"data": str((root / "eval").resolve())}))
    return run


def test_group_command_on_planted_persons(planted, tmp_path):
    root, answers = planted
    invoke(
        "group",
        "--data",
        root / "eval",
        "--train",
        root / "train",
        "--out",
        tmp_path / "free" / "groups.csv",
        "--quiet",
    )
    groups = pd.read_csv(tmp_path / "free" / "groups.csv", dtype={"ImageID": str})
    assert groups["ImageID"].tolist() == pd.read_csv(root / "eval" / "info.csv")["ImageID"].tolist()
    report = json.loads((tmp_path / "free" / "groups.json").read_text())
    assert report["mode"] == "threshold" and report["train"]["purity"] > 0.9 and report["train"]["completeness"] > 0.9
    truth = answers.set_index("ImageID").loc[groups["ImageID"], "person"].to_numpy()
    assert grouping_scores(truth, groups["group"].to_numpy())["pairwise_f1"] > 0.9

    run = _fake_run(root, answers, tmp_path)
    result = invoke(
        "group",
        "--data",
        root / "eval",
        "--run",
        run,
        "--group-size",
        7,
        "--out",
        tmp_path / "exact" / "groups.csv",
        "--quiet",
    )
    assert "known persons" in result.output
    groups = pd.read_csv(tmp_path / "exact" / "groups.csv", dtype={"ImageID": str})
    assert np.bincount(groups["group"]).tolist() == [7] * 10
    stems = answers.set_index("ImageID").loc[groups["ImageID"], "stem"].to_numpy()
    for group in range(10):
        assert sorted(stems[groups["group"].to_numpy() == group]).count("normal") == 1
        assert sorted(stems[groups["group"].to_numpy() == group]).count("incorrect_mask") == 1
    report = json.loads((tmp_path / "exact" / "groups.json").read_text())
    assert report["train"]["chunk_by"].startswith("the folds of") and report["train"]["chunks"] == 3
    assert set(report["oof_consistency"]) == {"without", "known_persons", "clustered_groups"}
    train_groups = pd.read_csv(tmp_path / "exact" / "groups_train.csv")
    assert len(train_groups) == 30 * 7 and (train_groups.groupby("group").size() == 7).all()


def test_an_unreadable_eval_photo_is_named_and_grouped_alone(planted, tmp_path):
    import shutil

    root, _ = planted
    shutil.copytree(root / "eval", tmp_path / "eval")
    info = pd.read_csv(tmp_path / "eval" / "info.csv", dtype=str)
    (tmp_path / "eval" / "images" / info["ImageID"][3]).write_bytes(b"not a photo")
    result = CliRunner().invoke(
        app,
        [
            "group",
            "--data",
            str(tmp_path / "eval"),
            "--threshold",
            "0.5",
            "--out",
            str(tmp_path / "groups.csv"),
            "--quiet",
        ],
        env={"COLUMNS": "300"},
    )
    assert (
        result.exit_code == 0 and f"could not read {tmp_path / 'eval' / 'images' / info['ImageID'][3]}" in result.output
    )
    groups = pd.read_csv(tmp_path / "groups.csv", dtype={"ImageID": str})
    assert groups["ImageID"].tolist() == info["ImageID"].tolist() and (groups["group"] == groups["group"][3]).sum() == 1
    assert json.loads((tmp_path / "groups.json").read_text())["eval"]["unreadable"][0]["file"].endswith(
        info["ImageID"][3]
    )


def test_group_refuses_what_it_cannot_do(planted, tmp_path):
    root, _ = planted
    runner = CliRunner()
    result = runner.invoke(
        app, ["group", "--data", str(root / "eval"), "--group-size", "7", "--out", str(tmp_path / "g.csv")]
    )
    assert result.exit_code == 2 and "--group-size needs --run" in result.output
    result = runner.invoke(app, ["group", "--data", str(root / "eval"), "--out", str(tmp_path / "g.csv")])
    assert result.exit_code == 2 and "--train" in result.output
    result = runner.invoke(
        app,
        [
            "group",
            "--data",
            str(root / "eval"),
            "--train",
            str(root / "train"),
            "--feature",
            "smell",
            "--out",
            str(tmp_path / "g.csv"),
        ],
    )
    assert result.exit_code == 2 and "unknown grouping feature 'smell'" in result.output


def test_read_groups_needs_every_photo(tmp_path):
    (tmp_path / "g.csv").write_text("ImageID,group\na.jpg,1\nb.jpg,1\n")
    assert read_groups(tmp_path / "g.csv", pd.Series(["b.jpg", "a.jpg"])).tolist() == ["1", "1"]
    with pytest.raises(GroupsError, match="no group for 1 of the 3 photos.*c.jpg"):
        read_groups(tmp_path / "g.csv", pd.Series(["a.jpg", "b.jpg", "c.jpg"]))
    (tmp_path / "bad.csv").write_text("ImageID,person\na.jpg,1\n")
    with pytest.raises(GroupsError, match="needs the columns"):
        read_groups(tmp_path / "bad.csv", pd.Series(["a.jpg"]))


@pytest.mark.slow
def test_predict_with_persons_keeps_row_order_and_the_raw_probabilities(tiny_run, demo_dir, tmp_path):
    info = pd.read_csv(demo_dir / "eval" / "info.csv", dtype=str)
    order = np.random.default_rng(7).permutation(len(info))
    pd.DataFrame({"ImageID": info["ImageID"].to_numpy()[order], "group": np.arange(len(info)) // 7}).to_csv(
        tmp_path / "groups.csv", index=False
    )
    invoke("predict", "--run", tiny_run, "--data", demo_dir / "eval", "--out", tmp_path / "plain", "--quiet")
    invoke(
        "predict",
        "--run",
        tiny_run,
        "--data",
        demo_dir / "eval",
        "--out",
        tmp_path / "persons",
        "--persons",
        tmp_path / "groups.csv",
        "--group-size",
        7,
        "--quiet",
    )
    plain = pd.read_csv(tmp_path / "plain" / "test_probs.csv", dtype={"image_id": str})
    table = pd.read_csv(tmp_path / "persons" / "test_probs.csv", dtype={"image_id": str})
    submission = pd.read_csv(tmp_path / "persons" / "submission.csv", dtype={"ImageID": str})
    assert table["image_id"].tolist() == info["ImageID"].tolist() == submission["ImageID"].tolist()
    assert np.allclose(table[PROB_COLUMNS].to_numpy(), plain[PROB_COLUMNS].to_numpy())
    assert list(table.columns[-19:]) == ["group", *PERSON_COLUMNS]
    consistent = table[PERSON_COLUMNS].to_numpy()
    assert np.array_equal(submission["ans"].to_numpy(), consistent.argmax(axis=1))
    for _, rows in table.groupby("group").groups.items():
        if len(rows) == 7:
            assert np.bincount(consistent[rows].argmax(axis=1) // 6, minlength=3).tolist() == [5, 1, 1]
    result = CliRunner().invoke(
        app,
        [
            "predict",
            "--run",
            str(tiny_run),
            "--data",
            str(demo_dir / "eval"),
            "--out",
            str(tmp_path / "x"),
            "--persons",
            str(tmp_path / "plain" / "submission.csv"),
        ],
    )
    assert result.exit_code == 2 and "needs the columns" in result.output


@pytest.mark.slow
def test_predict_onnx_with_persons_needs_no_torch_and_matches_the_run(tiny_run, tiny_onnx, demo_dir, tmp_path):
    info = pd.read_csv(demo_dir / "eval" / "info.csv", dtype=str)
    pd.DataFrame({"ImageID": info["ImageID"], "group": np.arange(len(info)) // 7}).to_csv(
        tmp_path / "groups.csv", index=False
    )
    persons = ["--persons", str(tmp_path / "groups.csv"), "--group-size", "7", "--quiet"]
    invoke("predict", "--run", tiny_run, "--data", demo_dir / "eval", "--out", tmp_path / "torch", *persons)
    argv = [
        "predict",
        "--onnx",
        str(tiny_onnx),
        "--data",
        str(demo_dir / "eval"),
        "--out",
        str(tmp_path / "onnx"),
        *persons,
    ]
    code = (
        NO_TORCH
        + f"""
from maskcls.cli import app
try:
    app({argv!r})
except SystemExit as done:
    if done.code:
        raise
assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules)
"""
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    torch_probs, onnx_probs = (
        pd.read_csv(tmp_path / name / "test_probs.csv", dtype={"image_id": str}) for name in ("torch", "onnx")
    )
    assert (
        list(onnx_probs.columns) == list(torch_probs.columns)
        and onnx_probs["group"].tolist() == torch_probs["group"].tolist()
    )
    assert np.abs(onnx_probs[PERSON_COLUMNS].to_numpy() - torch_probs[PERSON_COLUMNS].to_numpy()).max() < 1e-3
    assert json.loads((tmp_path / "onnx" / "predict.json").read_text())["group_size"] == 7


def test_predict_refuses_persons_options_that_cannot_apply(tmp_path):
    photo = tmp_path / "a.jpg"
    wide = {"COLUMNS": "300"}
    result = CliRunner().invoke(
        app, ["predict", "--run", str(tmp_path), str(photo), "--persons", str(tmp_path / "groups.csv")], env=wide
    )
    assert result.exit_code == 2 and "give --data EVAL_DIR" in result.output
    result = CliRunner().invoke(
        app, ["predict", "--run", str(tmp_path), "--data", str(tmp_path), "--group-size", "7"], env=wide
    )
    assert result.exit_code == 2 and "--group-size needs --persons" in result.output


@pytest.mark.slow
def test_group_with_a_trained_runs_backbone_and_mask_probabilities(tiny_run, demo_dir, tmp_path):
    invoke(
        "group",
        "--data",
        demo_dir / "eval",
        "--run",
        tiny_run,
        "--group-size",
        7,
        "--feature",
        "colour",
        "--feature",
        "backbone",
        "--weight",
        "backbone=0.5",
        "--out",
        tmp_path / "groups.csv",
        "--quiet",
    )
    groups = pd.read_csv(tmp_path / "groups.csv", dtype={"ImageID": str})
    assert groups["ImageID"].tolist() == pd.read_csv(demo_dir / "eval" / "info.csv", dtype=str)["ImageID"].tolist()
    assert (groups.groupby("group").size() == 7).all()
    report = json.loads((tmp_path / "groups.json").read_text())
    assert report["features"] == ["colour", "backbone"] and report["weights"] == {"backbone": 0.5}
    assert report["train"]["chunks"] == 3 and 0 < report["train"]["purity"] <= 1
    assert set(report["oof_consistency"]) == {"without", "known_persons", "clustered_groups"}
