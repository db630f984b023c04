"""Are the minutes a long solve leaves unused worth a lighter follower? A finished ``solve_on_persons.py`` run's
lead voted with a follower lighter than it (another backbone, input size or epochs), scored as submitted.

    python benchmarks/light_follower.py runs/lite60s11 --set model.name=tf_efficientnet_lite0 \
        --set data.image_size=96 --set train.seed=7 --work runs/follower [--out benchmarks/results/F.json]

The follower is the lead trained again with the ``--set`` overrides (``retrain_lead.py``: its recipe, folds, extra
faces and training persons). The lead alone, the follower alone and their soft vote (the mean of their
probabilities, as solve's vote) are scored on the test persons and on solve's own holdout, per photo and through
the finished solve's recipe (face evidence, decision rule, pooling; ``member_pairs.py``). The planner's prior
(docs/solve-planner.md) values a vote as its members' mean plus ``vote_gain`` per doubling, so it ranks a much
lighter follower below the lead alone and leaves such minutes unused; this measures what the vote does instead.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
from member_pairs import table_scores
from retrain_lead import retrain_arguments, retrain_lead

from maskcls.core.tables import PROB_COLUMNS, read_test_probs
from maskcls.ensemble.voting import soft_vote as soft_vote_of


def soft_vote(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The mean of ``tables``' probabilities, rows matched by image_id (in the first table's order)."""
    ids = tables[0]["image_id"]
    probs = soft_vote_of([t.set_index("image_id").loc[ids, PROB_COLUMNS].to_numpy(np.float64) for t in tables])
    return pd.concat([ids.reset_index(drop=True), pd.DataFrame(probs, columns=PROB_COLUMNS)], axis=1)


def main() -> None:
    args = retrain_arguments(__doc__, "what makes the follower lighter than the lead", "followers")
    report = {"command": sys.argv, "settings": args.settings}
    for run in args.solves:
        started = time.perf_counter()
        predicted = retrain_lead(run, args.work / run.name, args.settings)
        lead = read_test_probs(run / "solve" / "members" / "ce" / "test_probs.csv")
        follower = read_test_probs(predicted / "test_probs.csv")
        rows = {
            "lead": table_scores(run, lead),
            "follower": table_scores(run, follower),
            "vote": table_scores(run, soft_vote([lead, follower])),
        }
        rows["gain"] = {key: round(rows["vote"][key] - rows["lead"][key], 4) for key in rows["lead"]}
        rows["follower_minutes"] = round((time.perf_counter() - started) / 60, 1)  # ~0 when reused
        report[run.name] = rows
        print(run.name, json.dumps(rows), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
