"""AUPR by the zoo's rule and by the kNN-OOD authors' rule, side by side, from the raw scores of one OOD run.

The zoo reports AUPR as scikit-learn's step-wise average precision (`zoo.metrics.ood.average_precision`); the
authors' util/metrics.py integrates the same precision-recall points with the trapezoid rule from a pinned (0, 0)
start (`zoo.metrics.ood.trapezoid_precision_recall_area`). This reads the .npz files that `zoo eval MODEL --task
ood --save-scores DIR` writes (id.npz and one per OOD set, one array [N] per scorer) and writes both areas for
AUPR-in (ID positive) and AUPR-out (OOD positive) for every OOD set and scorer, with the recall at each curve's
first point (a large one, a run of positives tied at the top score, is where the two rules part most). Given an
OOD result JSON of the same model and settings, it first checks that the step-wise areas reproduce it.

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
from ...metrics.ood import aupr_in, aupr_out, trapezoid_precision_recall_area

NOT_SCORES = ("pred", "label")  # the other arrays of a saved-scores file


def first_recall(pos_scores: np.ndarray, neg_scores: np.ndarray) -> float:
    """Share of the positives [N_pos] that have the highest score of all (with the negatives [N_neg]): the recall of
    the precision-recall curve's first point when a positive holds that score (0 when only negatives do). The
    authors' rule joins that point to (0, 0) with a straight line, so a large tied top run (a saturated softmax)
    costs about half its recall times its precision."""
    top = max(pos_scores.max(), neg_scores.max())
    return float(np.mean(pos_scores == top))


def compare(scores: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """One row per (OOD set, scorer): AUPR-in and AUPR-out by both rules, fractions in [0, 1].

    Args:
        scores: ``{"id": {scorer: [N_id]}, ood_name: {scorer: [N_ood]}, ...}``, higher = more in-distribution;
            every OOD set has every scorer of ``"id"``.
    """
    idd = scores["id"]
    rows = []
    for ood, s in scores.items():
        if ood == "id":
            continue
        for scorer in idd:
            a, b = idd[scorer], s[scorer]
            rows.append({"ood": ood, "scorer": scorer,
                         "aupr_in": aupr_in(a, b), "aupr_in_trapezoid": trapezoid_precision_recall_area(a, b),
                         "first_recall_in": first_recall(a, b),
                         "aupr_out": aupr_out(a, b), "aupr_out_trapezoid": trapezoid_precision_recall_area(-b, -a),
                         "first_recall_out": first_recall(-b, -a)})
    return rows


def read_scores(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{input name: {scorer: [N]}}`` from a ``--save-scores`` folder: id.npz and at least one OOD set, the
    scorers being id.npz's one-dimensional arrays other than pred and label; each OOD file must hold them all."""
    if not folder.is_dir():
        raise ZooError(f"--scores {folder} is not a folder: pass the folder given to `zoo eval ... --task ood "
                       f"--save-scores`")
    files = {f.stem: f for f in sorted(folder.glob("*.npz"))}
    if "id" not in files or len(files) < 2:
        raise ZooError(f"{folder} needs id.npz and one .npz per OOD set, has {sorted(files) or 'none'}: pass the "
                       f"folder given to `zoo eval ... --task ood --save-scores`")
    out = {}
    for name, f in files.items():
        with np.load(f) as z:
            out[name] = {k: z[k].astype(np.float64) for k in z.files if k not in NOT_SCORES and z[k].ndim == 1}
    scorers = list(out["id"])
    if not scorers:
        raise ZooError(f"{files['id']} holds no one-dimensional score arrays: not a `--save-scores` file")
    for name, arrays in out.items():
        missing = [s for s in scorers if s not in arrays]
        if missing:
            raise ZooError(f"{files[name]} lacks the scores {', '.join(missing)} that id.npz has: the files come "
                           f"from different runs")
        out[name] = {s: arrays[s] for s in scorers}
    return out


def check_reproduces(rows: list[dict], results, tol: float) -> float:
    """Largest difference between the rows' step-wise areas and the same rows of an OOD run's result (the
    ``zoo eval --task ood --json`` dict); raises when the two have other (OOD set, scorer) rows or a difference
    exceeds ``tol``. A rerun of one evaluation differs by float rounding (about 1e-4 where many scores tie)."""
    if not (isinstance(results, dict) and isinstance(results.get("results"), list)
            and all(isinstance(r, dict) and {"ood", "scorer", "aupr_in", "aupr_out"} <= set(r)
                    for r in results["results"])):
        raise ZooError("--results is not an OOD result: pass the --json that `zoo eval ... --task ood` wrote")
    published = {(r["ood"], r["scorer"]): r for r in results["results"]}
    ours = {(r["ood"], r["scorer"]): r for r in rows}
    if set(published) != set(ours):
        only = sorted(set(ours) ^ set(published))
        raise ZooError(f"the scores and --results hold different (OOD set, scorer) rows, e.g. {only[0]}: pass the "
                       f"result of the same model, OOD sets and scorers")
    worst = max(abs(ours[key][m] - published[key][m]) for key in ours for m in ("aupr_in", "aupr_out"))
    if worst > tol:
        raise ZooError(f"the scores' step-wise AUPR differs from --results by {worst:.2g} (more than --tol {tol}): "
                       f"they are not the scores of that model and settings")
    return worst


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m zoo.models.knn_ood.aupr_rules", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scores", required=True, type=Path, help="the folder `zoo eval --save-scores` wrote")
    p.add_argument("--results", type=Path, help="an OOD result JSON of the same model and settings, to check the "
                                                "step-wise areas against")
    p.add_argument("--tol", type=float, default=1e-3, help="largest accepted difference from --results, as a "
                                                           "fraction (default %(default)s)")
    p.add_argument("--json", type=Path, help="where to write the comparison")
    a = p.parse_args(argv)
    try:
        rows = compare(read_scores(a.scores))
        out = {"rows": rows}
        if a.results:
            if not a.results.is_file():
                raise ZooError(f"--results {a.results} does not exist")
            try:
                results = json.loads(read_utf8(a.results))
            except json.JSONDecodeError as exc:
                raise ZooError(f"--results {a.results} is not JSON ({exc})") from None
            out["results"] = str(a.results)
            out["max_diff_from_results"] = check_reproduces(rows, results, a.tol)
    except ZooError as exc:
        p.error(str(exc))
    print(f"{'AUPR, %':<33} {'in: step / trapezoid (first recall)':>35} {'out: step / trapezoid (first recall)':>36}")
    for r in rows:
        print(f"{r['ood']:<20} {r['scorer']:<12} {100 * r['aupr_in']:15.2f} / {100 * r['aupr_in_trapezoid']:6.2f} "
              f"({100 * r['first_recall_in']:5.2f} %) {100 * r['aupr_out']:16.2f} / "
              f"{100 * r['aupr_out_trapezoid']:6.2f} ({100 * r['first_recall_out']:5.2f} %)")
    if a.json:
        write_json(a.json, out)


if __name__ == "__main__":
    main()
