import numpy as np
import pandas as pd
import pytest

from maskcls.core.folds import assign_folds
from maskcls.core.labels import encode


def _manifest(persons=300, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for person in range(persons):
        gender, age = rng.integers(2), rng.choice(3, p=[0.45, 0.45, 0.1])
        for mask in [0] * 5 + [1, 2]:
            rows.append({"person_id": f"{person:06d}", "label": encode(mask, gender, age)})
    return pd.DataFrame(rows)


def test_no_person_is_in_two_folds():
    manifest = _manifest()
    folds = assign_folds(manifest, 5, seed=3)
    assert set(folds) == set(range(5))
    assert (manifest.assign(fold=folds).groupby("person_id")["fold"].nunique() == 1).all()


def test_folds_are_stratified_by_class():
    manifest = _manifest()
    folds = assign_folds(manifest, 5, seed=3)
    overall = manifest["label"].value_counts(normalize=True)
    for fold in range(5):
        share = manifest.loc[folds == fold, "label"].value_counts(normalize=True).reindex(overall.index, fill_value=0)
        assert np.abs(share - overall).max() < 0.03, f"fold {fold} is far from the overall class balance"
        assert abs((folds == fold).mean() - 0.2) < 0.03


def test_same_seed_same_folds_other_seed_other_folds():
    manifest = _manifest()
    assert np.array_equal(assign_folds(manifest, 5, 7), assign_folds(manifest, 5, 7))
    assert not np.array_equal(assign_folds(manifest, 5, 7), assign_folds(manifest, 5, 8))


def test_more_folds_than_persons_is_refused():
    with pytest.raises(ValueError, match="number of persons"):
        assign_folds(_manifest(persons=3), 5, 0)
