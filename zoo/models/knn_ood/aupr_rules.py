"""AUPR by the zoo's rule and by the kNN-OOD authors' rule, side by side, from the raw scores of one OOD run.

The zoo reports AUPR as scikit-learn's step-wise average precision (`zoo.metrics.ood.average_precision`); the
authors' ``util/metrics.py`` integrates the same precision-recall points with the trapezoid rule from a pinned
(0, 0) start (`zoo.metrics.ood.trapezoid_precision_recall_area`). This reads the ``.npz`` files that
``zoo eval MODEL --task ood --save-scores DIR`` writes (``id.npz`` and one per OOD set, one array [N] per
scorer) and writes both areas for AUPR-in (ID positive) and AUPR-out (OOD positive) for every OOD set and scorer,
with the recall at each curve's first point (where the two rules part most).
Given the run's ``--json`` result, it first checks that the step-wise areas reproduce it.

    zoo eval knn_ood_resnet20.cifar10 --task ood ... --json R.json --save-scores S
    python -m zoo.models.knn_ood.aupr_rules --scores S --results R.json --json OUT.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ...errors import ZooError
from ...io import read_utf8, write_json
from ...metrics.ood import average_precision, trapezoid_precision_recall_area

NOT_SCORES = ("pred", "label")  # the other arrays of a saved-scores file


def first_recall(pos_scores: np.ndarray, neg_scores: np.ndarray) -> float:
    """Recall at the precision-recall curve's first point: the share of the positives [N_pos] that have the
    highest score of all (with the negatives [N_neg]). The authors' rule joins that point to (0, 0) with a straight
    line, so a large tied top run (a saturated softmax) costs about half its recall times its precision."""
    top = max(pos_scores.max(), neg_scores.max())
    return float(np.mean(pos_scores == top))


def compare(scores: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """One row per (OOD set, scorer): AUPR-in and AUPR-out by both rules, fractions in [0, 1].

    Args:
        scores: ``{"id": {scorer: [N_id]}, ood_name: {scorer: [N_ood]}, ...}``, higher = more in-distribution.
    """
    idd = scores["id"]
    rows = []
    for ood, s in scores.items():
        if ood == "id":
            continue
        for scorer in (k for k in idd if k not in NOT_SCORES):
            a, b = idd[scorer], s[scorer]
            rows.append({"ood": ood, "scorer": scorer,
                         "aupr_in": average_precision(a, b), "aupr_in_trapezoid": trapezoid_precision_recall_area(a, b),
                         "first_recall_in": first_recall(a, b),
                         "aupr_out": average_precision(-b, -a),
                         "aupr_out_trapezoid": trapezoid_precision_recall_area(-b, -a),
                         "first_recall_out": first_recall(-b, -a)})
    return rows


def read_scores(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{input name: {array name: [N]}}`` from a ``--save-scores`` folder; it must hold ``id.npz``."""
    files = sorted(folder.glob("*.npz"))
    if not any(f.stem == "id" for f in files):
        raise ZooError(f"{folder} has no id.npz: pass the folder given to `zoo eval ... --task ood --save-scores`")
    out = {}
    for f in files:
        with np.load(f) as z:
            out[f.stem] = {k: z[k].astype(np.float64) for k in z.files}
    return out


def check_reproduces(rows: list[dict], results: dict, tol: float) -> float:
    """Largest difference between the rows' step-wise areas and the same rows of an OOD run's result; raises
    when a row is missing or a difference exceeds ``tol``."""
    published = {(r["ood"], r["scorer"]): r for r in results["results"]}
    worst = 0.0
    for row in rows:
        ref = published.get((row["ood"], row["scorer"]))
        if ref is None:
            raise ZooError(f"the result file has no row for {row['ood']} / {row['scorer']}: pass the --json "
                           f"written by the run that saved these scores")
        for m in ("aupr_in", "aupr_out"):
            worst = max(worst, abs(row[m] - ref[m]))
    if worst > tol:
        raise ZooError(f"the scores' step-wise AUPR differs from the result file by {worst:.2g} (> {tol}): "
                       f"they come from another run")
    return worst


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scores", required=True, type=Path, help="the folder `zoo eval --save-scores` wrote")
    p.add_argument("--results", type=Path, help="that run's --json result, to check the step-wise areas against")
    p.add_argument("--tol", type=float, default=1e-3, help="largest accepted difference from --results")
    p.add_argument("--json", type=Path, help="where to write the comparison")
    a = p.parse_args(argv)
    rows = compare(read_scores(a.scores))
    out = {"rows": rows}
    if a.results:
        out["results"] = str(a.results)
        out["max_diff_from_results"] = check_reproduces(rows, json.loads(read_utf8(a.results)), a.tol)
    print(f"{'OOD set':<20} {'scorer':<12} {'AUPR-in step / trapezoid (first recall)':>40} "
          f"{'AUPR-out step / trapezoid (first recall)':>41}")
    for r in rows:
        print(f"{r['ood']:<20} {r['scorer']:<12} {100 * r['aupr_in']:18.2f} / {100 * r['aupr_in_trapezoid']:6.2f} "
              f"({100 * r['first_recall_in']:5.2f} %) {100 * r['aupr_out']:19.2f} / "
              f"{100 * r['aupr_out_trapezoid']:6.2f} ({100 * r['first_recall_out']:5.2f} %)")
    if a.json:
        write_json(a.json, out)


if __name__ == "__main__":
    main()
