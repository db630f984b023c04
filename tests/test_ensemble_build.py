import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maskcls.core.crossfit import cross_fit
from maskcls.core.io import write_csv
from maskcls.core.labels import encode
from maskcls.core.metrics import classification_metrics
from maskcls.core.tables import OOF_COLUMNS, PROB_COLUMNS, probs_of, read_oof, read_test_probs
from maskcls.ensemble.build import EnsembleError, build_ensemble, load_ensemble, read_members
from maskcls.ensemble.stacking import cross_validated_stacking
from maskcls.ensemble.thresholds import apply_class_scales
from maskcls.ensemble.voting import WeightedVote, hard_vote, soft_vote

RUN_SUMMARY_KEYS = {
    "oof_macro_f1", "oof_accuracy", "mask_accuracy", "mask_macro_f1", "gender_accuracy", "gender_macro_f1",
    "age_accuracy", "age_macro_f1", "images", "persons", "oof_images", "task",
}  # fmt: skip


def _people(persons, prefix, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for person in range(persons):
        gender, age = rng.integers(2), rng.integers(3)
        for photo, mask in enumerate([0] * 5 + [1, 2]):
            rows.append(
                {
                    "image_id": f"{prefix}{person:03d}_{photo}",
                    "person_id": f"{prefix}{person:03d}",
                    "label": encode(mask, gender, age),
                }
            )
    return pd.DataFrame(rows)


TRAIN = _people(60, "tr", seed=0)
TEST = _people(20, "te", seed=1)


def _probs(labels, skill, seed, bias=None):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (len(labels), 18))
    logits[np.arange(len(labels)), labels] += skill
    if bias is not None:
        logits += np.log(bias)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _write_run(
    directory: Path, skill: float, seed: int, shuffle: bool = False, with_test: bool = True, bias=None
) -> Path:
    """A run directory: oof.csv (optionally in another row order) and test_probs.csv with one unreadable photo."""
    rng = np.random.default_rng(seed)
    oof = TRAIN.assign(fold=np.arange(len(TRAIN)) // 7 % 5 if not shuffle else np.arange(len(TRAIN)) // 7 % 4)
    oof = pd.concat(
        [
            oof[["image_id", "person_id", "fold", "label"]],
            pd.DataFrame(_probs(TRAIN["label"].to_numpy(), skill, seed, bias), columns=PROB_COLUMNS),
        ],
        axis=1,
    )
    test = pd.concat(
        [
            TEST[["image_id"]],
            pd.DataFrame(_probs(TEST["label"].to_numpy(), skill, seed + 100, bias), columns=PROB_COLUMNS),
        ],
        axis=1,
    )
    test.loc[3, PROB_COLUMNS] = np.nan
    if shuffle:
        oof = oof.iloc[rng.permutation(len(oof))]
        test = test.iloc[rng.permutation(len(test))]
    write_csv(directory / "oof.csv", oof)
    if with_test:
        write_csv(directory / "test_probs.csv", test)
    return directory


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "good": _write_run(root / "good", skill=2.5, seed=1),
        "weak": _write_run(root / "weak", skill=1.0, seed=2, shuffle=True),
        "third": _write_run(root / "third", skill=1.5, seed=3),
    }


def _member_test_probs(directories, reference_ids):
    return [
        probs_of(read_test_probs(d / "test_probs.csv").set_index("image_id").loc[reference_ids].reset_index())
        for d in directories
    ]


def _read_exact(path):
    return pd.read_csv(path, dtype={"image_id": str, "person_id": str, "ImageID": str}, float_precision="round_trip")


@pytest.mark.parametrize("method", ["soft", "hard", "weighted", "stack"])
def test_build_ensemble_writes_an_honest_run_shaped_directory(runs, tmp_path, method):
    members = [runs["good"], runs["weak"]]
    out = tmp_path / "ensemble"
    summary = build_ensemble(members, method, out, cv_splits=4, seed=0)

    assert {p.name for p in out.iterdir()} == {
        "oof.csv",
        "test_probs.csv",
        "submission.csv",
        "summary.json",
        "ensemble.json",
    }
    oof = read_oof(out / "oof.csv")
    first = read_oof(runs["good"] / "oof.csv")
    assert list(oof.columns) == OOF_COLUMNS
    assert oof["image_id"].tolist() == first["image_id"].tolist() and oof["fold"].tolist() == first["fold"].tolist()
    np.testing.assert_allclose(probs_of(oof).sum(axis=1), 1.0)

    assert set(summary) >= RUN_SUMMARY_KEYS and json.loads((out / "summary.json").read_text())["method"] == method
    assert summary["oof_macro_f1"] == pytest.approx(classification_metrics(oof["label"], probs_of(oof))["macro_f1"])
    assert [m["path"] for m in summary["members"]] == [str(d.resolve()) for d in members]
    assert summary["members"][0]["oof_macro_f1"] > summary["members"][1]["oof_macro_f1"]

    # Members are aligned by image_id (the weak member's rows are shuffled on disk).
    tables = read_members(members)
    by_id = [read_oof(d / "oof.csv").set_index("image_id").loc[first["image_id"]] for d in members]
    np.testing.assert_array_equal(tables.oof_probs, np.stack([table[PROB_COLUMNS].to_numpy() for table in by_id]))
    assert summary["members"][1]["oof_macro_f1"] == pytest.approx(
        classification_metrics(by_id[1]["label"], by_id[1][PROB_COLUMNS].to_numpy())["macro_f1"]
    )

    # Honesty: the written OOF rows are exactly the out-of-sample (cross-fitted) predictions.
    labels, person_ids = tables.oof["label"].to_numpy(), tables.oof["person_id"].to_numpy()
    if method == "soft":
        expected = soft_vote(tables.oof_probs)
    elif method == "hard":
        expected = hard_vote(tables.oof_probs)
    elif method == "weighted":
        expected, _ = cross_fit(
            lambda fit, score: (
                WeightedVote().fit(tables.oof_probs[:, fit], labels[fit]).predict_proba(tables.oof_probs[:, score])
            ),
            labels,
            person_ids,
            4,
            0,
        )
    else:
        expected, _ = cross_validated_stacking(tables.oof_probs, labels, person_ids, "logreg", n_splits=4, seed=0)
    np.testing.assert_allclose(probs_of(_read_exact(out / "oof.csv")), expected, rtol=0, atol=0)
    assert ("in_sample_macro_f1" in summary) == (method in ("weighted", "stack"))
    if method == "weighted":
        assert summary["weights"][0] > summary["weights"][1]

    # Test time: the first member's row order, the unreadable photo stays NaN and gets the fallback class.
    test_probs = _read_exact(out / "test_probs.csv")
    submission = _read_exact(out / "submission.csv")
    test_order = read_test_probs(runs["good"] / "test_probs.csv")["image_id"].tolist()
    assert test_probs["image_id"].tolist() == test_order and submission["ImageID"].tolist() == test_order
    assert list(submission.columns) == ["ImageID", "ans"]
    assert test_probs.loc[3, PROB_COLUMNS].isna().all() and submission.loc[3, "ans"] == np.bincount(labels).argmax()
    readable = test_probs.index != 3
    assert (submission["ans"][readable] == probs_of(test_probs)[readable].argmax(axis=1)).all()

    ensemble = load_ensemble(out)
    member_probs = _member_test_probs(members, test_order)
    np.testing.assert_array_equal(ensemble.combine(member_probs), probs_of(test_probs))
    np.testing.assert_array_equal(ensemble.answers(member_probs), submission["ans"].to_numpy())


def test_stacked_oof_is_scored_on_unseen_persons_end_to_end(tmp_path):
    # Pure-noise members: a 1-nearest-neighbour-like stacker memorises them perfectly in sample, and an
    # honest out-of-sample score stays near chance (1/18).
    noise = [_write_run(tmp_path / name, skill=0.0, seed=seed) for name, seed in (("n1", 11), ("n2", 12))]
    summary = build_ensemble(noise, "stack", tmp_path / "out", learner="knn", cv_splits=4)
    assert summary["in_sample_macro_f1"] == pytest.approx(1.0)
    assert summary["oof_macro_f1"] < 0.25


def test_threshold_adjustment_changes_only_the_submission(runs, tmp_path):
    bias = np.where(np.arange(18) % 6 == 0, 6.0, 1.0)
    members = [_write_run(tmp_path / "b1", 2.0, 21, bias=bias), _write_run(tmp_path / "b2", 1.5, 22, bias=bias)]
    plain = build_ensemble(members, "weighted", tmp_path / "plain", cv_splits=4)
    adjusted = build_ensemble(members, "weighted", tmp_path / "adjusted", adjust_thresholds=True, cv_splits=4)

    block = adjusted["threshold_adjusted"]
    assert block["macro_f1_before"] == pytest.approx(adjusted["oof_macro_f1"])
    assert block["cv_macro_f1"] > block["macro_f1_before"] and "in_sample_macro_f1" in block
    assert adjusted["oof_macro_f1"] == plain["oof_macro_f1"] and "threshold_adjusted" not in plain
    test_probs = _read_exact(tmp_path / "adjusted" / "test_probs.csv")
    pd.testing.assert_frame_equal(test_probs, _read_exact(tmp_path / "plain" / "test_probs.csv"))
    answers = _read_exact(tmp_path / "adjusted" / "submission.csv")["ans"].to_numpy()
    readable = ~test_probs[PROB_COLUMNS].isna().any(axis=1).to_numpy()
    scaled = apply_class_scales(probs_of(test_probs)[readable], np.asarray(block["scales"]))
    np.testing.assert_array_equal(answers[readable], scaled.argmax(axis=1))
    ensemble = load_ensemble(tmp_path / "adjusted")
    np.testing.assert_array_equal(ensemble.answers(_member_test_probs(members, test_probs["image_id"])), answers)


def test_ensembles_can_be_ensembled(runs, tmp_path):
    inner = tmp_path / "inner"
    build_ensemble([runs["good"], runs["weak"]], "soft", inner)
    outer = tmp_path / "outer"
    summary = build_ensemble([inner, runs["third"]], "stack", outer, learner="logreg", head_features=True, cv_splits=4)
    assert summary["members"][0]["path"] == str(inner.resolve()) and summary["head_features"] is True
    test_probs = _read_exact(outer / "test_probs.csv")
    member_probs = _member_test_probs([inner, runs["third"]], test_probs["image_id"])
    np.testing.assert_array_equal(load_ensemble(outer).combine(member_probs), probs_of(test_probs))
    assert read_oof(outer / "oof.csv")["image_id"].tolist() == read_oof(runs["good"] / "oof.csv")["image_id"].tolist()


def test_members_that_disagree_are_refused(runs, tmp_path):
    short = tmp_path / "short"
    short.mkdir()
    write_csv(short / "oof.csv", read_oof(runs["good"] / "oof.csv").iloc[:-7])
    with pytest.raises(
        EnsembleError, match=r"short/oof.csv holds 413 image ids, .*holds 420: 7 of its image ids are missing"
    ):
        build_ensemble([runs["good"], short], "soft", tmp_path / "out")

    relabelled = tmp_path / "relabelled"
    relabelled.mkdir()
    oof = read_oof(runs["good"] / "oof.csv")
    oof.loc[5, "label"] = (oof.loc[5, "label"] + 1) % 18
    write_csv(relabelled / "oof.csv", oof)
    with pytest.raises(EnsembleError, match="disagrees with .* on label for 1 image"):
        build_ensemble([runs["good"], relabelled], "soft", tmp_path / "out")

    other_test = _write_run(tmp_path / "other_test", 1.0, 5)
    table = read_test_probs(other_test / "test_probs.csv")
    write_csv(other_test / "test_probs.csv", table.assign(image_id=table["image_id"].str.replace("te000", "xx000")))
    with pytest.raises(EnsembleError, match="test_probs.csv holds 140 image ids"):
        build_ensemble([runs["good"], other_test], "soft", tmp_path / "out")

    with pytest.raises(EnsembleError, match="listed more than once"):
        build_ensemble([runs["good"], runs["good"]], "soft", tmp_path / "out")
    with pytest.raises(EnsembleError, match="unknown ensemble method 'mean'"):
        build_ensemble([runs["good"]], "mean", tmp_path / "out")


def test_output_folder_is_never_a_member_or_a_foreign_folder(runs, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(EnsembleError, match="not an ensemble directory"):
        build_ensemble([runs["good"], runs["weak"]], "soft", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(EnsembleError, match="would replace member"):
        build_ensemble([runs["good"], runs["weak"]], "soft", runs["weak"].parent)

    out = tmp_path / "again"
    build_ensemble([runs["good"], runs["weak"]], "soft", out)
    build_ensemble([runs["good"], runs["weak"]], "hard", out)  # an earlier ensemble is replaced whole
    assert json.loads((out / "ensemble.json").read_text())["method"] == "hard"


def test_members_without_test_probs_give_oof_only(runs, tmp_path):
    no_test = _write_run(tmp_path / "no_test", 1.0, 6, with_test=False)
    summary = build_ensemble([runs["good"], no_test], "soft", tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"oof.csv", "summary.json", "ensemble.json"}
    assert summary["test_images"] is None and "no_test" in summary["test_note"]


def test_loading_a_stack_refuses_changed_member_oof(runs, tmp_path):
    member = tmp_path / "member"
    shutil.copytree(runs["weak"], member)
    build_ensemble([runs["good"], member], "stack", tmp_path / "out", cv_splits=3)
    oof = read_oof(member / "oof.csv")
    write_csv(member / "oof.csv", oof.iloc[::-1])
    with pytest.raises(EnsembleError, match="member/oof.csv changed since"):
        load_ensemble(tmp_path / "out")
    (member / "oof.csv").unlink()
    with pytest.raises(EnsembleError, match="member/oof.csv is missing"):
        load_ensemble(tmp_path / "out")
    with pytest.raises(EnsembleError, match="no ensemble.json"):
        load_ensemble(runs["good"])
