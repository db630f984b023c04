"""The solve's person holdout: two views the ordinary runs read, disjoint persons, honest scores, and the
decision record every keep / drop choice writes (``measured_on``, the gain, the OOF proxy's gain beside it)."""

import json

import numpy as np
import pandas as pd
import pytest

from maskcls.core.metrics import classification_metrics
from maskcls.core.tables import PROB_COLUMNS
from maskcls.data.layout import read_eval, read_train
from maskcls.solver.decisions import DEFAULTS, NOISE_Z, gain_noise, settle
from maskcls.solver.holdout import eval_rows, holdout_scores, is_holdout, load_holdout, make_holdout
from maskcls.solver.run import _Context


@pytest.fixture
def holdout(demo_dir, tmp_path):
    return make_holdout(demo_dir / "train", demo_dir / "eval", tmp_path / "solve", share=0.2)


def test_views_split_whole_persons_and_read_as_ordinary_folders(demo_dir, holdout, tmp_path):
    full, _ = read_train(demo_dir / "train")
    kept, problems = read_train(holdout.train_dir)
    assert problems == []
    held = set(holdout.answers["person_id"])
    assert held and set(kept["person_id"]).isdisjoint(held)
    assert set(kept["person_id"]) | held == set(full["person_id"])  # every person is on one side
    assert 0.1 < len(held) / full["person_id"].nunique() < 0.3
    assert holdout.answers.groupby("person_id").size().eq(7).all()  # all of a person's photos

    info, problems = read_eval(holdout.eval_dir)
    assert problems == []
    real, _ = read_eval(demo_dir / "eval")
    assert info["image_id"].tolist()[: len(real)] == real["image_id"].tolist()  # the eval photos first, in order
    assert info["image_id"].tolist()[len(real) :] == holdout.answers["image_id"].tolist()
    assert is_holdout(info["image_id"]).sum() == len(holdout.answers)
    by_id = full.assign(view=[f"holdout/{p.split('/')[-2]}/{p.split('/')[-1]}" for p in full["path"]])
    truth = by_id.set_index("view")["label"].loc[holdout.answers["image_id"]].to_numpy()
    assert np.array_equal(truth, holdout.answers["label"].to_numpy())  # the answers are the photos' labels

    again = load_holdout(tmp_path / "solve")
    assert again.answers.equals(holdout.answers) and again.persons == holdout.persons
    assert load_holdout(tmp_path / "no_solve") is None


def _table(holdout, eval_photos, probs_of_holdout):
    ids = [f"eval_{i}.jpg" for i in range(eval_photos)] + holdout.answers["image_id"].tolist()
    probs = np.full((len(ids), 18), 1 / 18)
    probs[eval_photos:] = probs_of_holdout
    return pd.DataFrame(probs, columns=PROB_COLUMNS).assign(image_id=ids)[["image_id", *PROB_COLUMNS]]


def test_holdout_scores_read_only_the_holdout_rows(holdout):
    labels = holdout.answers["label"].to_numpy()
    right = np.eye(18)[labels]
    table = _table(holdout, 5, right)
    assert holdout_scores(table, holdout)["macro_f1"] == 1.0 and holdout_scores(table, holdout)["photos"] == len(labels)
    wrong = np.eye(18)[(labels + 1) % 18]
    assert holdout_scores(table, holdout, _table(holdout, 5, wrong)[PROB_COLUMNS].to_numpy())["accuracy"] == 0.0
    noisy = np.random.default_rng(0).dirichlet(np.ones(18), len(labels))
    expected = classification_metrics(labels, noisy)
    assert holdout_scores(_table(holdout, 3, noisy), holdout)["macro_f1"] == pytest.approx(
        expected["macro_f1"], abs=1e-4
    )
    assert eval_rows(table)["image_id"].tolist() == [f"eval_{i}.jpg" for i in range(5)]


def _candidate(directory, holdout, probs, oof_macro_f1):
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(json.dumps({"oof_macro_f1": oof_macro_f1}))
    _table(holdout, 4, probs).to_csv(directory / "test_probs.csv", index=False)
    return directory


def test_decisions_are_taken_on_the_holdout_and_record_the_proxy(holdout, tmp_path):
    labels = holdout.answers["label"].to_numpy()
    context = _Context(tmp_path, None, None, None, None, holdout)
    good = context.scores(_candidate(tmp_path / "good", holdout, np.eye(18)[labels], 0.50))
    poor = context.scores(_candidate(tmp_path / "poor", holdout, np.eye(18)[(labels + 1) % 18], 0.60))
    dirs = (tmp_path / "poor", tmp_path / "good")
    assert good == {"oof": 0.50, "holdout": 1.0} and poor["holdout"] == 0.0
    # The proxy says the poor candidate is better; the holdout, which is predicted as the submission, says not.
    decision = context.decide("member_x", "member", poor, good, "soft vote with it", directories=dirs)
    assert decision["kept"] is False and decision["gain"] == -1.0 and decision["holdout_gain"] == -1.0
    assert decision["clear"] is True and decision["noise"] < 0.5  # far outside the noise: the holdout decides
    assert decision["proxy_gain"] == pytest.approx(0.10) and decision["proxy"] == "oof"
    assert decision["measured_on"].startswith(f"holdout of {holdout.persons} persons")
    assert "holdout macro F1 0.0000 <= 1.0000" in decision["reason"]
    assert context.decide("member_y", "member", good, poor, "", directories=dirs[::-1])["kept"] is True

    without = _Context(tmp_path, None, None, None, None, None)  # holdout_share=0: the OOF proxy decides
    decision = without.decide("member_x", "member", {"oof": 0.6}, {"oof": 0.5}, "soft vote with it")
    assert decision["kept"] is True and "holdout_gain" not in decision and "no holdout" in decision["measured_on"]


def test_a_gain_inside_the_holdouts_noise_is_settled_by_the_stages_default(holdout, tmp_path):
    labels = holdout.answers["label"].to_numpy()
    right = np.eye(18)[labels]
    one_wrong = right.copy()  # one person's photos wrong: a gain that only that person carries
    first = (holdout.answers["person_id"] == holdout.answers["person_id"].iloc[0]).to_numpy()
    one_wrong[first] = np.eye(18)[(labels[first] + 1) % 18]
    context = _Context(tmp_path, None, None, None, None, holdout)
    better = _candidate(tmp_path / "better", holdout, right, 0.5)
    worse = _candidate(tmp_path / "worse", holdout, one_wrong, 0.5)
    with_table = pd.read_csv(better / "test_probs.csv")
    noise = gain_noise(holdout, with_table, pd.read_csv(worse / "test_probs.csv"))
    assert noise > 0 and gain_noise(holdout, with_table, with_table) == 0.0

    # The holdout says "better" by a gain its own resampling cannot tell from chance: the default decides,
    # whichever way the gain points, and the record says so.
    weighted = context.decide("weighted vote", "weighted vote", context.scores(better), context.scores(worse),
                              "weighted vote", directories=(better, worse))  # fmt: skip
    assert weighted["gain"] > 0 and weighted["clear"] is False
    assert (
        weighted["kept"] is DEFAULTS["weighted vote"][0] is False
        and "the default decides: dropped" in weighted["reason"]
    )
    assert abs(weighted["gain"]) <= NOISE_Z * weighted["noise"]
    member = context.decide("member_z", "member", context.scores(worse), context.scores(better), "soft vote",
                            directories=(worse, better))  # fmt: skip
    assert member["gain"] < 0 and member["kept"] is True and member["default"] is True

    # Probabilities given beside the table (pooled ones, a rule's) are what is scored, not the table's.
    assert gain_noise(holdout, with_table, with_table, None, _table(holdout, 4, one_wrong)[PROB_COLUMNS].to_numpy()) > 0


def test_settle_reads_the_sign_only_where_it_is_clear():
    assert settle(0.05, 0.01, "weighted vote") == (True, True)
    assert settle(-0.05, 0.01, "member") == (False, True)
    assert settle(0.01, 0.01, "weighted vote") == (False, False)
    assert settle(-0.01, 0.01, "person consistency") == (True, False)
    assert settle(0.001, None, "weighted vote") == (True, True)  # no holdout: the proxy's sign
    assert set(DEFAULTS) == {"faces", "member", "weighted vote", "pseudo-label round", "person consistency",
                             "face attributes", "decision rule"}  # fmt: skip


def test_members_are_judged_on_the_holdout_as_submitted(holdout):
    """Each holdout person's face evidence is added to their photos and the photos are pooled by person; the
    eval rows are left alone, and a person without evidence is only pooled."""
    from maskcls.persons.attributes import with_evidence
    from maskcls.solver.face_evidence import holdout_as_submitted

    answers = holdout.answers
    noisy = np.random.default_rng(1).dirichlet(np.ones(18), len(answers))
    table = _table(holdout, 3, noisy)
    persons = answers["person_id"].astype(str).unique()
    evidence = pd.DataFrame(np.random.default_rng(2).normal(size=(len(persons) - 1, 6)), index=persons[1:])
    probs = holdout_as_submitted(table, answers, evidence, group_size=7)
    assert np.allclose(probs[:3], table[PROB_COLUMNS].to_numpy()[:3])  # the eval photos: untouched
    held = probs[3:]
    for person in persons:
        rows = np.flatnonzero(answers["person_id"].astype(str).to_numpy() == person)
        gender_age = held[rows].reshape(len(rows), 3, 6).sum(axis=1)
        assert np.allclose(gender_age, gender_age[0])  # pooled: one gender x age per person
    first = np.flatnonzero(answers["person_id"].astype(str).to_numpy() == persons[0])
    alone = holdout_as_submitted(table, answers, None, group_size=7)
    assert np.allclose(held[first], alone[3:][first])  # no evidence for the first person: only pooled
    second = np.flatnonzero(answers["person_id"].astype(str).to_numpy() == persons[1])
    assert not np.allclose(held[second], alone[3:][second])
    unpooled = holdout_as_submitted(table, answers, evidence, group_size=None)
    added = with_evidence(noisy[second], np.repeat(evidence.loc[[persons[1]]].to_numpy(), len(second), axis=0))
    assert np.allclose(unpooled[3:][second], added)
