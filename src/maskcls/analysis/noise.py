"""Label-noise finder: which photos and persons do the out-of-fold predictions contradict most?

Out-of-fold probabilities come from a model that never saw the person, so a confident contradiction is evidence
against the given label. Five kinds of suspicion, each ranked by a score in [0, 1]:

- ``swapped_pair``: each person has one ``normal`` and one ``incorrect_mask`` photo; when the normal photo reads
  "incorrect" and the incorrect photo reads "not worn", both with at least ``confidence``, the files are likely
  swapped. Score: the geometric mean of the two probabilities.
- ``person_gender`` / ``person_age``: the 7 photos of a person share gender and age, so the mask-independent
  marginals are averaged over the person; a person whose average votes for another gender (age group) than the
  given one is a suspect. Score: the averaged probability of the labels other than the given one.
- ``photo_mask``: a photo whose mask label disagrees with a prediction of at least ``confidence`` (photos of a
  suspected swapped pair are listed there, not here). Score: 1 - p(given mask).
- ``photo_class``: confident learning on the 18-class probabilities (cleanlab's ``find_label_issues``, per-class
  thresholds from the confident joint). Score: 1 - p(given class) (cleanlab's self-confidence).

``maskcls noise`` writes ``noise.csv`` (ranked suspects), ``suggested_fixes.csv`` (the fixes that would apply the
predicted labels, in the ``--label-fixes`` format, for a person to review), a contact sheet ``noise.png`` and
``summary.json``.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.artifacts import OOF_FILE, SUMMARY_FILE, run_label_fixes, run_labels, run_record
from ..core.io import write_csv, write_json
from ..core.labels import GENDER_NAMES, MASK_NAMES, AgeThresholds, Mask, class_names, head_probabilities
from ..core.tables import PROB_COLUMNS, TableError, probs_of, read_oof
from ..data.label_fixes import read_train_with_fixes


class NoiseError(ValueError):
    """A run or folder the noise finder cannot judge (no 18-class OOF table, no overlap with the folder)."""


KINDS = ("swapped_pair", "person_gender", "person_age", "photo_mask", "photo_class")
SUSPECT_COLUMNS = [
    "kind",
    "rank",
    "person_id",
    "image_id",
    "path",
    "given",
    "predicted",
    "score",
    "photos",
    "field",
    "suggested",
]


def find_label_noise(
    table: pd.DataFrame, thresholds: AgeThresholds = AgeThresholds(), confidence: float = 0.8
) -> pd.DataFrame:
    """Ranked suspects (``SUSPECT_COLUMNS``) of a table with the manifest's columns (image_id, person_id, stem,
    path, mask, gender, age_group, label) and the OOF probabilities p0..p17 of the same photos."""
    if not 0.5 <= confidence < 1:
        raise NoiseError(f"confidence must be in [0.5, 1), got {confidence}")
    table = table.reset_index(drop=True)
    probs = probs_of(table)
    heads = head_probabilities(probs)
    pairs = _swapped_pairs(table, heads["mask"], confidence)
    paired = set(pairs["image_id"]) | set(pairs.pop("other_image_id")) if len(pairs) else set()
    frames = [
        pairs,
        _person_votes(table, heads["gender"], "gender", GENDER_NAMES, "person_gender"),
        _person_votes(table, heads["age"], "age_group", thresholds.names(), "person_age"),
        _photo_masks(table, heads["mask"], confidence, paired),
        _photo_classes(table, probs, thresholds),
    ]
    suspects = (
        pd.concat([f for f in frames if len(f)], ignore_index=True)
        if any(len(f) for f in frames)
        else pd.DataFrame(columns=SUSPECT_COLUMNS)
    )
    suspects["kind"] = pd.Categorical(suspects["kind"], categories=KINDS, ordered=True)
    suspects = suspects.sort_values(["kind", "score"], ascending=[True, False], kind="stable").reset_index(drop=True)
    suspects["rank"] = suspects.groupby("kind", observed=True).cumcount() + 1
    suspects["kind"] = suspects["kind"].astype(str)
    suspects["score"] = suspects["score"].astype(float).round(4)
    return suspects[SUSPECT_COLUMNS]


def _swapped_pairs(table: pd.DataFrame, mask_probs: np.ndarray, confidence: float) -> pd.DataFrame:
    normal = table.index[table["stem"] == "normal"]
    incorrect = table.index[table["stem"] == "incorrect_mask"]
    pairs = pd.DataFrame({"person_id": table.loc[normal, "person_id"].to_numpy(), "normal_row": normal}).merge(
        pd.DataFrame({"person_id": table.loc[incorrect, "person_id"].to_numpy(), "incorrect_row": incorrect}),
        on="person_id",
    )
    # Given labels as the file names say (a fix may already have relabelled one photo: then it is no longer a pair
    # to judge).
    keep = (table.loc[pairs["normal_row"], "mask"].to_numpy() == Mask.NOT_WEAR) & (
        table.loc[pairs["incorrect_row"], "mask"].to_numpy() == Mask.INCORRECT
    )
    pairs = pairs[keep]
    normal_reads_incorrect = mask_probs[pairs["normal_row"], Mask.INCORRECT]
    incorrect_reads_normal = mask_probs[pairs["incorrect_row"], Mask.NOT_WEAR]
    flagged = (normal_reads_incorrect >= confidence) & (incorrect_reads_normal >= confidence)
    pairs = pairs[flagged]
    rows = table.loc[pairs["normal_row"]]
    return pd.DataFrame(
        {
            "kind": "swapped_pair",
            "person_id": rows["person_id"].to_numpy(),
            "image_id": rows["image_id"].to_numpy(),
            "path": rows["path"].to_numpy(),
            "given": "normal / incorrect_mask",
            "predicted": "swapped",
            "score": np.sqrt(normal_reads_incorrect[flagged] * incorrect_reads_normal[flagged]),
            "photos": 2,
            "field": "mask",
            "suggested": "swap",
            "other_image_id": table.loc[pairs["incorrect_row"], "image_id"].to_numpy(),
        }
    )


def _person_votes(table: pd.DataFrame, head_probs: np.ndarray, column: str, names, kind: str) -> pd.DataFrame:
    """Persons whose photos, averaged, vote for another value of a person-level attribute than the given one."""
    columns = [f"v{i}" for i in range(head_probs.shape[1])]
    votes = pd.concat([table[["person_id", column]], pd.DataFrame(head_probs, columns=columns)], axis=1)
    if votes.groupby("person_id")[column].nunique().gt(1).any():
        raise NoiseError(f"a person's photos disagree on {column}: the table does not come from one training folder")
    mean = votes.groupby("person_id", sort=False).agg(
        given=(column, "first"), photos=(column, "size"), **{c: (c, "mean") for c in columns}
    )
    averaged = mean[columns].to_numpy()
    given = mean["given"].to_numpy()
    predicted = averaged.argmax(axis=1)
    flagged = predicted != given
    persons = mean.index[flagged]
    face = (
        table.assign(order=(table["stem"] != "normal").astype(int))
        .sort_values("order", kind="stable")
        .drop_duplicates("person_id")
        .set_index("person_id")
    )
    field = "gender" if column == "gender" else "age_group"
    return pd.DataFrame(
        {
            "kind": kind,
            "person_id": persons,
            "image_id": face.loc[persons, "image_id"].to_numpy(),
            "path": face.loc[persons, "path"].to_numpy(),
            "given": [f"{field}: {names[g]}" for g in given[flagged]],
            "predicted": [f"{field}: {names[p]}" for p in predicted[flagged]],
            "score": 1 - averaged[flagged, given[flagged]],
            "photos": mean.loc[persons, "photos"].to_numpy(),
            "field": field,
            "suggested": [names[p] for p in predicted[flagged]],
        }
    )


def _photo_masks(table: pd.DataFrame, mask_probs: np.ndarray, confidence: float, paired: set) -> pd.DataFrame:
    given = table["mask"].to_numpy()
    predicted = mask_probs.argmax(axis=1)
    flagged = (predicted != given) & (mask_probs.max(axis=1) >= confidence) & ~table["image_id"].isin(paired).to_numpy()
    rows = table[flagged]
    return pd.DataFrame(
        {
            "kind": "photo_mask",
            "person_id": rows["person_id"].to_numpy(),
            "image_id": rows["image_id"].to_numpy(),
            "path": rows["path"].to_numpy(),
            "given": [f"mask: {MASK_NAMES[m]}" for m in given[flagged]],
            "predicted": [f"mask: {MASK_NAMES[m]}" for m in predicted[flagged]],
            "score": 1 - mask_probs[flagged, given[flagged]],
            "photos": 1,
            "field": "mask",
            "suggested": [MASK_NAMES[m] for m in predicted[flagged]],
        }
    )


def _photo_classes(table: pd.DataFrame, probs: np.ndarray, thresholds: AgeThresholds) -> pd.DataFrame:
    from cleanlab.filter import find_label_issues

    labels = table["label"].to_numpy(dtype=np.int64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*too few examples.*")
        flagged = find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    names = class_names(thresholds)
    rows = table[flagged]
    given, predicted = labels[flagged], probs[flagged].argmax(axis=1)
    return pd.DataFrame(
        {
            "kind": "photo_class",
            "person_id": rows["person_id"].to_numpy(),
            "image_id": rows["image_id"].to_numpy(),
            "path": rows["path"].to_numpy(),
            "given": [f"class {c}: {names[c]}" for c in given],
            "predicted": [f"class {c}: {names[c]}" for c in predicted],
            "score": 1 - probs[flagged, given],
            "photos": 1,
            "field": "",
            "suggested": "",
        }
    )


def fixes_from_suspects(suspects: pd.DataFrame) -> pd.DataFrame:
    """The ``--label-fixes`` rows that would apply the suspects' predicted labels, for a person to review
    (``photo_class`` has no single field to fix and is left out). A swapped pair becomes two ``mask`` rows."""
    rows = []
    for suspect in suspects.itertuples(index=False):
        note = f"{suspect.kind} #{suspect.rank} score {suspect.score:.3f}"
        if suspect.kind == "swapped_pair":
            folder = suspect.image_id.rpartition("/")[0]
            rows.append(
                {
                    "person_id": suspect.person_id,
                    "image_id": f"{folder}/normal",
                    "field": "mask",
                    "value": MASK_NAMES[Mask.INCORRECT],
                    "note": note,
                }
            )
            rows.append(
                {
                    "person_id": suspect.person_id,
                    "image_id": f"{folder}/incorrect_mask",
                    "field": "mask",
                    "value": MASK_NAMES[Mask.NOT_WEAR],
                    "note": note,
                }
            )
        elif suspect.kind in ("person_gender", "person_age"):
            rows.append(
                {
                    "person_id": suspect.person_id,
                    "image_id": "",
                    "field": suspect.field,
                    "value": suspect.suggested,
                    "note": note,
                }
            )
        elif suspect.kind == "photo_mask":
            rows.append(
                {
                    "person_id": suspect.person_id,
                    "image_id": suspect.image_id,
                    "field": "mask",
                    "value": suspect.suggested,
                    "note": note,
                }
            )
    return pd.DataFrame(rows, columns=["person_id", "image_id", "field", "value", "note"]).drop_duplicates(
        ["person_id", "image_id", "field"]
    )


def noise_report(
    run_dir: str | Path,
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    label_fixes: str | Path | None = None,
    confidence: float = 0.8,
    sheet_size: int = 60,
) -> dict:
    """Judge the labels of ``data_dir`` (default: the run's training folder, with the run's own label fixes unless
    ``label_fixes`` names others) with ``run_dir``'s out-of-fold predictions; write the ranked suspects."""
    started = time.perf_counter()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    oof_path = run_dir / OOF_FILE
    try:
        oof = read_oof(oof_path)
    except TableError as err:
        raise NoiseError(f"{err} (the noise finder needs a run's 18-class out-of-fold table)") from None
    thresholds = run_labels(run_dir).thresholds
    if data_dir is None:
        data_dir = run_record(run_dir).get("data")
        if data_dir is None:
            raise NoiseError(f"{run_dir} records no training folder: pass --data TRAIN_DIR")
        label_fixes = label_fixes if label_fixes is not None else run_label_fixes(run_dir)
    manifest, problems, fixes = read_train_with_fixes(data_dir, thresholds, label_fixes)
    table = manifest.merge(
        oof[["image_id", "label", *PROB_COLUMNS]].rename(columns={"label": "run_label"}), on="image_id", how="inner"
    )
    if table.empty:
        raise NoiseError(
            f"no photo of {data_dir} has an out-of-fold prediction in {oof_path}: is it the folder the run trained on?"
        )
    suspects = find_label_noise(table, thresholds, confidence)
    fixes_table = fixes_from_suspects(suspects)
    summary = {
        "run": str(run_dir.resolve()),
        "data": str(Path(data_dir).resolve()),
        "label_fixes": fixes.record() if fixes else None,
        "confidence": confidence,
        "photos_judged": int(len(table)),
        "persons_judged": int(table["person_id"].nunique()),
        "photos_without_oof": int(len(manifest) - len(table)),
        "oof_rows_not_in_data": int(len(oof) - len(table)),
        "labels_differing_from_run": int((table["label"] != table["run_label"]).sum()),
        "suspects": {kind: int((suspects["kind"] == kind).sum()) for kind in KINDS},
        "problems_in_data": len(problems),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "noise.csv", suspects)
    write_csv(out_dir / "suggested_fixes.csv", fixes_table)
    if len(suspects):
        _contact_sheet(suspects, out_dir / "noise.png", sheet_size)
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    write_json(out_dir / SUMMARY_FILE, summary)
    return summary


def _contact_sheet(suspects: pd.DataFrame, out_png: Path, size: int) -> None:
    """The top suspects of every kind, person-level kinds first; a swapped pair shows both photos. Captions:
    kind letter (S swap, G gender, A age, M mask, C class), person, given > predicted, score."""
    from ..ensemble.uncertainty import contact_sheet

    per_kind = max(1, size // len(KINDS))
    paths, captions = [], []
    for kind in KINDS:
        for suspect in suspects[suspects["kind"] == kind].head(per_kind).itertuples(index=False):
            given, predicted = (_short(text) for text in (suspect.given, suspect.predicted))
            paths.append(suspect.path)
            if kind == "swapped_pair":
                captions.append(f"S {suspect.person_id} normal {suspect.score:.2f}")
                other = [str(p) for p in sorted(Path(suspect.path).parent.glob("incorrect_mask.*"))[:1]]
                paths += other
                captions += [f"S {suspect.person_id} incorrect"] * len(other)
            else:
                captions.append(
                    f"{'GAMC'[KINDS.index(kind) - 1]} {suspect.person_id} {given}>{predicted} {suspect.score:.2f}"
                )
    contact_sheet(paths, captions, out_png, thumb_hw=(128, 120), columns=10)


def _short(label: str) -> str:
    """'gender: female' -> 'f', 'mask: not_wear' -> 'not', 'class 4: ...' -> 'c4', 'age_group: 30-59' -> '30-59'."""
    field, _, value = label.partition(": ")
    if field == "gender":
        return value[0]
    if field == "mask":
        return value[:3]
    if field.startswith("class"):
        return "c" + field.split()[-1]
    return value
