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
    table = capsys.readouterr().out.splitlines()
    header = "AUPR, % in: step / trapezoid (first recall) out: step / trapezoid (first recall)"
    assert table[0].split() == header.split()
    assert table[2].split() == (f"textures msp {100 * msp['aupr_in']:.2f} / {100 * msp['aupr_in_trapezoid']:.2f} "
                                f"(75.00 %) {100 * msp['aupr_out']:.2f} / {100 * msp['aupr_out_trapezoid']:.2f} "
                                f"(50.00 %)").split()


def test_checks_the_scores_against_the_runs_result(tmp_path):
    scores = aupr_rules.read_scores(_saved_scores(tmp_path / "s"))
    assert {name: list(arrays) for name, arrays in scores.items()} == {"id": ["knn", "msp"],
                                                                       "textures": ["knn", "msp"]}
    rows = aupr_rules.compare(scores)
    result = {"results": [{k: r[k] for k in ("ood", "scorer", "aupr_in", "aupr_out")} for r in rows]}
    assert aupr_rules.check_reproduces(rows, result, tol=1e-3) == 0.0
    result["results"][1]["aupr_out"] += 0.01
    with pytest.raises(ZooError, match=r"differs from --results by 0.01 \(more than --tol 0.001\): they are not"):
        aupr_rules.check_reproduces(rows, result, tol=1e-3)
    with pytest.raises(ZooError, match=r"different \(OOD set, scorer\) rows, e.g. \('textures', 'msp'\)"):
        aupr_rules.check_reproduces(rows, {"results": result["results"][:1]}, tol=1e-3)
    with pytest.raises(ZooError, match=r"different \(OOD set, scorer\) rows, e.g. \('svhn', 'knn'\)"):
        aupr_rules.check_reproduces(rows, {"results": result["results"] + [dict(result["results"][0], ood="svhn")]},
                                    tol=1e-3)
    with pytest.raises(ZooError, match="--results is not an OOD result"):
        aupr_rules.check_reproduces(rows, {"rows": rows}, tol=1e-3)  # an aupr_rules file, not the run's result


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(ZooError, match="--scores .*nope is not a folder"):
        aupr_rules.read_scores(tmp_path / "nope")
    only_id = tmp_path / "only_id"
    only_id.mkdir()
    np.savez(only_id / "id.npz", knn=np.zeros(3))
    with pytest.raises(ZooError, match=r"needs id.npz and one .npz per OOD set, has \['id'\]: pass the folder"):
        aupr_rules.read_scores(only_id)
    folder = _saved_scores(tmp_path / "s")
    np.savez(folder / "svhn.npz", knn=np.zeros(2), pred=np.zeros(2))
    with pytest.raises(ZooError, match="svhn.npz lacks the scores msp that id.npz has: the files come from differ"):
        aupr_rules.read_scores(folder)


def test_the_command_line_reports_bad_input_as_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        aupr_rules.main(["--scores", str(_saved_scores(tmp_path / "s")), "--results", str(tmp_path / "r.json")])
    assert exit_.value.code == 2
    assert "aupr_rules: error: --results " in capsys.readouterr().err
