"""The AUPR-rule comparison (`zoo.models.knn_ood.aupr_rules`) on a hand-made saved-scores folder."""

import json

import numpy as np
import pytest

from zoo.errors import ZooError
from zoo.metrics.ood import average_precision, trapezoid_precision_recall_area
from zoo.models.knn_ood import aupr_rules


def _saved_scores(folder):
    """What `zoo eval --task ood --save-scores` writes: id.npz and one file per OOD set, scorers plus pred/label."""
    folder.mkdir()
    np.savez(folder / "id.npz", knn=np.array([3.0, 1.0, 1.0, 5.0], np.float32),
             msp=np.array([1.0, 1.0, 0.5, 1.0], np.float32), pred=np.zeros(4), label=np.zeros(4))
    np.savez(folder / "textures.npz", knn=np.array([2.0, 0.0], np.float32), msp=np.array([1.0, 0.2], np.float32),
             pred=np.zeros(2), label=np.zeros(2))
    return folder


def test_rows_give_both_rules_and_the_first_points_recall(tmp_path, capsys):
    out = tmp_path / "rules.json"
    aupr_rules.main(["--scores", str(_saved_scores(tmp_path / "s")), "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["ood"], r["scorer"]) for r in rows] == [("textures", "knn"), ("textures", "msp")]
    knn, msp = rows
    a, b = np.array([3.0, 1.0, 1.0, 5.0]), np.array([2.0, 0.0])
    assert knn["aupr_in"] == average_precision(a, b)
    assert knn["aupr_in_trapezoid"] == trapezoid_precision_recall_area(a, b)
    assert knn["aupr_out_trapezoid"] == trapezoid_precision_recall_area(-b, -a)
    assert (knn["first_recall_in"], knn["first_recall_out"]) == (1 / 4, 1 / 2)  # ID 5 on top; OOD 0 lowest
    assert (msp["first_recall_in"], msp["first_recall_out"]) == (3 / 4, 1 / 2)  # three ID 1.0s tie an OOD 1.0
    assert msp["aupr_in_trapezoid"] < msp["aupr_in"]  # the tied top run is one straight segment from (0, 0)
    assert "AUPR-in step / trapezoid (first recall)" in capsys.readouterr().out


def test_checks_the_scores_against_the_runs_result(tmp_path):
    scores = aupr_rules.read_scores(_saved_scores(tmp_path / "s"))
    rows = aupr_rules.compare(scores)
    result = {"results": [{k: r[k] for k in ("ood", "scorer", "aupr_in", "aupr_out")} for r in rows]}
    assert aupr_rules.check_reproduces(rows, result, tol=1e-3) == 0.0
    result["results"][1]["aupr_out"] += 0.01
    with pytest.raises(ZooError, match=r"differs from the result file by 0.01 \(> 0.001\): they come from another"):
        aupr_rules.check_reproduces(rows, result, tol=1e-3)
    with pytest.raises(ZooError, match="no row for textures / msp"):
        aupr_rules.check_reproduces(rows, {"results": result["results"][:1]}, tol=1e-3)


def test_a_folder_without_id_scores_is_named(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"")
    with pytest.raises(ZooError, match="no id.npz: pass the folder given to `zoo eval ... --task ood --save-scores`"):
        aupr_rules.read_scores(tmp_path)
