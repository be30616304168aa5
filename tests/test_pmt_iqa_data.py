"""PMT-IQA data and metrics: the dataset readers, splits, crops, and SRCC / PLCC / KRCC against scipy."""

import csv
import pickle
import shutil

import numpy as np
import pytest
import torch
from conftest import require_data
from PIL import Image

from zoo.data.iqa import detect_layout, read_table
from zoo.data.iqa_crops import IQACrops, image_seed
from zoo.data.iqa_datamodule import IQADataModule
from zoo.data.iqa_splits import load_split_file, official_split, random_splits
from zoo.errors import ZooError
from zoo.metrics.iqa import fit_logistic, iqa_metrics, krcc, logistic4, plcc, rankdata, srcc


def _image(path, size=(256, 240), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize("ties", [False, True])
def test_correlations_match_scipy(ties):
    from scipy import stats

    rng = np.random.default_rng(1)
    t = rng.normal(size=300)
    p = t + rng.normal(scale=0.8, size=300)
    if ties:
        p, t = np.round(p, 1), np.round(t, 1)
    assert np.allclose(rankdata(p), stats.rankdata(p))
    assert srcc(p, t) == pytest.approx(stats.spearmanr(p, t)[0], abs=1e-12)
    assert plcc(p, t) == pytest.approx(stats.pearsonr(p, t)[0], abs=1e-12)
    assert krcc(p, t) == pytest.approx(stats.kendalltau(p, t)[0], abs=1e-12)  # tau-b, chunked over 1024 rows


def test_krcc_over_several_chunks_matches_scipy():
    from scipy import stats

    rng = np.random.default_rng(2)
    t = rng.integers(0, 50, 2500).astype(float)
    p = t + rng.normal(scale=10, size=2500)
    assert krcc(p, t) == pytest.approx(stats.kendalltau(p, t)[0], abs=1e-12)


def test_logistic_fit_recovers_the_curve_and_straightens_plcc():
    rng = np.random.default_rng(3)
    x = rng.uniform(-4, 4, 400)
    truth = (5.0, 1.0, 0.5, 0.7)
    y = logistic4(x, *truth) + rng.normal(scale=0.01, size=400)
    params = fit_logistic(x, y)
    assert np.allclose(logistic4(x, *params), logistic4(x, *truth), atol=0.02)
    assert plcc(x, y, logistic=True) > 0.999 > plcc(x, y)
    assert set(iqa_metrics(x, y, logistic=True)) == {"srcc", "plcc", "krcc", "plcc_logistic"}


def test_logistic_plcc_keeps_the_sign_of_a_decreasing_relation():
    """The fitted logistic follows the scores, so PLCC(fitted, scores) is positive even where the scores fall as the
    predictions rise; plcc_logistic carries the fit's direction. Checked against scipy: its own curve_fit of the
    VQEG logistic, pearsonr of the fitted values, and the sign of the fitted curve's direction (spearmanr)."""
    from scipy import optimize, stats

    def vqeg(x, b1, b2, b3, b4):
        return (b1 - b2) / (1 + np.exp(-(x - b3) / abs(b4))) + b2

    rng = np.random.default_rng(4)
    x = rng.uniform(-3, 3, 300)
    for y in (1 / (1 + np.exp(-2 * x)) + rng.normal(scale=0.02, size=300),  # increasing
              3 - 5 / (1 + np.exp(-2 * x)) + rng.normal(scale=0.05, size=300),  # decreasing (DMOS-like)
              -0.3 * x + rng.normal(scale=1.0, size=300)):  # weak, decreasing
        params, _ = optimize.curve_fit(vqeg, x, y, p0=[y.max(), y.min(), x.mean(), x.std()], maxfev=20000)
        fitted = vqeg(x, *params)
        ref = np.sign(stats.spearmanr(x, fitted)[0]) * stats.pearsonr(fitted, y)[0]
        got = plcc(x, y, logistic=True)
        assert got == pytest.approx(ref, abs=1e-6)
        assert np.sign(got) == np.sign(plcc(x, y)) == np.sign(srcc(x, y))
    assert iqa_metrics(x, -(1 / (1 + np.exp(-2 * x))), logistic=True)["plcc_logistic"] == pytest.approx(-1, abs=1e-6)


def test_metric_errors_and_constant_input():
    """A constant side has no correlation: every metric refuses it, naming the side, instead of returning NaN."""
    for metric in (srcc, plcc, krcc, iqa_metrics):
        with pytest.raises(ZooError, match=r"all 5 predictions are 1, and a correlation with a constant is undef"):
            metric(np.ones(5), np.arange(5.0))
        with pytest.raises(ZooError, match=r"all 5 scores are 0\.5, .*score a set of images whose true scores"):
            metric(np.arange(5.0), np.full(5, 0.5))
    with pytest.raises(ZooError, match="4 predictions for 5 scores"):
        srcc(np.ones(4), np.ones(5))
    with pytest.raises(ZooError, match="at least 3"):
        plcc([1, 2], [1, 2])
    with pytest.raises(ZooError, match="NaN"):
        krcc([1, np.nan, 2], [1, 2, 3])


# ---------------------------------------------------------------- readers


def _layouts(root):
    """Tiny folders in each dataset layout, with the files their readers need."""
    from scipy.io import savemat

    out = {}
    d = root / "biq"
    _write_csv(d / "Train.csv", ["Image Name", "MOS", "", ""],  # as distributed, with two empty columns
               [["ss01 (1).jpg", "0.2", "", ""], ["ss03 (9).jpg", "0.9", "", ""]])
    _write_csv(d / "Test.csv", ["Image Name", "MOS"], [["ss02 (4).jpg", "0.5"]])
    out["biq2021"] = d
    d = root / "koniq"
    d.mkdir()
    _write_csv(d / "koniq10k_scores_and_distributions.csv", ["image_name", "MOS", "MOS_zscore"],
               [["a.jpg", "3.1", "55.5"], ["b.jpg", "2.0", "30.0"], ["c.jpg", "4.0", "80.0"]])
    _write_csv(d / "koniq10k_distributions_sets.csv", ["image_name", "set"],
               [["a.jpg", "training"], ["b.jpg", "validation"], ["c.jpg", "test"]])
    out["koniq10k"] = d
    d = root / "livec"
    (d / "Data").mkdir(parents=True)
    names = np.array([[np.array([f"t{i}.bmp"])] for i in range(7)] + [[np.array(["x.bmp"])], [np.array(["y.JPG"])]],
                     dtype=object)
    savemat(d / "Data" / "AllImages_release.mat", {"AllImages_release": names})
    savemat(d / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([[50.0] * 7 + [12.5, 77.0]])})
    out["livec"] = d
    d = root / "live"
    d.mkdir()
    n = 982
    orgs = np.zeros((1, n))
    orgs[0, [0, 500]] = 1
    refs = np.array([[np.array([f"ref{i % 29}.bmp"]) for i in range(n)]], dtype=object)
    savemat(d / "dmos_realigned.mat", {"dmos_new": np.linspace(0, 99, n)[None], "orgs": orgs})
    savemat(d / "refnames_all.mat", {"refnames_all": refs})
    out["live"] = d
    d = root / "csiq"
    d.mkdir()
    (d / "csiq_label.txt").write_text("1600.AWGN.1.png 0.062\n1600.JPEG.2.png 0.2\naerial_city.BLUR.5.png 0.9\n")
    out["csiq"] = d
    d = root / "tid"
    d.mkdir()
    (d / "mos_with_names.txt").write_text("5.51429 i01_01_1.bmp\n3.0 i01_02_4.bmp\n6.2 i25_01_1.bmp\n")
    out["tid2013"] = d
    d = root / "kadid"
    d.mkdir()
    _write_csv(d / "dmos.csv", ["dist_img", "ref_img", "dmos", "var"],
               [["I01_01_01.png", "I01.png", "4.57", "0.3"], ["I02_01_01.png", "I02.png", "2.1", "0.5"]])
    out["kadid10k"] = d
    return out


def test_every_layout_is_detected_and_read(tmp_path):
    folders = _layouts(tmp_path)
    for layout, folder in folders.items():
        assert detect_layout(folder) == layout
    biq = read_table(folders["biq2021"])
    assert biq.split == ["train", "train", "test"] and biq.score_range == (0.0, 1.0)
    assert biq.paths[0] == folders["biq2021"] / "ss01 (1).jpg" and biq.scores.tolist() == [0.2, 0.9, 0.5]
    koniq = read_table(folders["koniq10k"])
    assert koniq.scores.tolist() == [55.5, 30.0, 80.0] and koniq.split == ["train", "val", "test"]
    assert koniq.paths[0].parent.name == "1024x768" and koniq.score_range == (0.0, 100.0)
    livec = read_table(folders["livec"])
    assert [p.name for p in livec.paths] == ["x.bmp", "y.JPG"] and livec.scores.tolist() == [12.5, 77.0]
    live = read_table(folders["live"])
    assert len(live) == 980 and not live.higher_better and live.refs[0] == "ref1.bmp"
    assert live.paths[0].parts[-2:] == ("jp2k", "img2.bmp")
    assert live.paths[-1].parts[-2:] == ("fastfading", "img174.bmp")
    csiq = read_table(folders["csiq"])
    assert csiq.refs == ["1600", "1600", "aerial_city"] and csiq.score_range == (0.0, 1.0) and not csiq.higher_better
    tid = read_table(folders["tid2013"])
    assert tid.refs == ["01", "01", "25"] and tid.scores[0] == pytest.approx(5.51429)
    kadid = read_table(folders["kadid10k"])
    assert kadid.refs == ["I01.png", "I02.png"] and kadid.paths[1].parent.name == "images"


def test_csv_layout_pyiqa_meta_and_column_options(tmp_path):
    _write_csv(tmp_path / "meta.csv", ["ref_name", "dist_name", "mos"],
               [["r1.bmp", "d1.bmp", "3"], ["r1.bmp", "d2.bmp", "1"], ["r2.bmp", "d3.bmp", "2"]])
    t = read_table(tmp_path)
    assert t.refs == ["r1.bmp", "r1.bmp", "r2.bmp"] and t.score_range == (1.0, 3.0)
    assert read_table(tmp_path, score_range=(0, 5)).score_range == (0.0, 5.0)
    with pytest.raises(ZooError, match="no column 'quality'"):
        read_table(tmp_path, score_col="quality")
    _write_csv(tmp_path / "other.csv", ["a"], [["1"]])
    with pytest.raises(ZooError, match="found 2: meta.csv, other.csv"):
        read_table(tmp_path)
    _write_csv(tmp_path / "bad.csv", ["img_name", "mos"], [["x.png", "good"]])
    with pytest.raises(ZooError, match=r"bad.csv, row 2: score 'good' is not a number"):
        read_table(tmp_path, csv_path=tmp_path / "bad.csv")


def test_given_csv_or_columns_select_the_csv_layout_over_marker_files(tmp_path):
    """A user CSV named like a dataset's marker file (dmos.csv: KADID-10k; Test.csv: BIQ2021) is read as the CSV it
    is when --csv, --image-col or --score-col is given with --layout auto."""
    rows = [["a.png", "0.1"], ["b.png", "0.9"], ["c.png", "0.5"]]
    _write_csv(tmp_path / "k" / "dmos.csv", ["image", "mos"], rows)
    _write_csv(tmp_path / "b" / "Test.csv", ["image", "mos"], rows)
    assert detect_layout(tmp_path / "k") == "kadid10k" and detect_layout(tmp_path / "b") == "biq2021"
    for folder, name in ((tmp_path / "k", "dmos.csv"), (tmp_path / "b", "Test.csv")):
        for given in ({"csv_path": folder / name}, {"score_col": "mos"}, {"image_col": "image"}):
            t = read_table(folder, **given)
            assert t.name == folder.name and t.scores.tolist() == [0.1, 0.9, 0.5] and t.split is None, given
            assert t.higher_better and t.paths[0] == folder / "a.png"
    with pytest.raises(ZooError, match=r"dmos\.csv has no column 'dist_img'"):  # a named layout is still that layout
        read_table(tmp_path / "k", layout="kadid10k", score_col="mos")
    with pytest.raises(ZooError, match=r"BIQ2021 needs Train\.csv; .*or read a CSV of your own with --layout csv"):
        read_table(tmp_path / "b")  # nothing given: the marker decides, and the error says how to read it as a CSV


def test_given_column_names_match_regardless_of_case_and_spaces(tmp_path):
    """As the header's names do: --image-col IMAGE and --score-col ' Quality ' find 'image' and 'quality'."""
    _write_csv(tmp_path / "m.csv", ["image", " Quality ", "mos"], [["a.png", "3", "9"], ["b.png", "1", "8"]])
    t = read_table(tmp_path, image_col="IMAGE", score_col=" quality")
    assert [p.name for p in t.paths] == ["a.png", "b.png"] and t.scores.tolist() == [3.0, 1.0]
    _write_csv(tmp_path / "m.csv", ["image", "MOS", "mos"], [["a.png", "3", "9"], ["b.png", "1", "8"]])
    assert read_table(tmp_path, score_col="mos").scores.tolist() == [9.0, 8.0]  # the exact name wins
    assert read_table(tmp_path, score_col="MOS").scores.tolist() == [3.0, 1.0]
    with pytest.raises(ZooError, match=r"has no column 'score' \(columns: 'image', 'MOS', 'mos'\)"):
        read_table(tmp_path, score_col="score")


def test_pyiqa_meta_csvs_whose_column_names_mislead_are_read_in_the_right_direction(tmp_path):
    """pyiqa's LIVE meta CSV stores DMOS in a column named mos (lower is better), its KADID-10k one a 1-5 rating in a
    column named dmos (higher is better); both are recognised by file name, as LIVE's own .mat files read as DMOS.
    Another column of those files, and the same columns in other files, go by the column's name."""
    rows = [["r1.bmp", "jp2k/img1.bmp", "40.2", "3"], ["r1.bmp", "jp2k/img2.bmp", "10.5", "4"]]
    _write_csv(tmp_path / "live" / "meta_info_LIVEIQADataset.csv", ["ref_name", "dist_name", "mos", "dmos"], rows)
    _write_csv(tmp_path / "kadid" / "META_INFO_KADID10KDATASET.csv", ["ref_name", "dist_name", "dmos", "mos"], rows)
    _write_csv(tmp_path / "other" / "scores.csv", ["ref_name", "dist_name", "mos", "dmos"], rows)
    assert not read_table(tmp_path / "live").higher_better
    assert read_table(tmp_path / "live", score_col="dmos").higher_better is False
    assert read_table(tmp_path / "kadid").higher_better
    assert read_table(tmp_path / "kadid", score_col="mos").higher_better
    assert read_table(tmp_path / "other").higher_better
    assert not read_table(tmp_path / "other", score_col="dmos").higher_better
    assert not read_table(_layouts(tmp_path / "layouts")["live"]).higher_better


def test_missing_csv_or_wrong_forced_layout_is_a_user_error(tmp_path):
    _write_csv(tmp_path / "mos.csv", ["image", "mos"], [["a.png", "1"]])
    with pytest.raises(ZooError, match=r"missing\.csv does not exist; point --data at the dataset folder"):
        read_table(tmp_path, csv_path=tmp_path / "missing.csv")
    with pytest.raises(ZooError, match=r"koniq10k_scores_and_distributions\.csv does not exist"):
        read_table(tmp_path, layout="koniq10k")


def test_levels_are_clamped_equal_width_bins(tmp_path):
    _write_csv(tmp_path / "m.csv", ["image", "mos_0_1"], [[f"{i}.png", s] for i, s in
                                                          enumerate(["0", "0.05", "0.1", "0.55", "0.999", "1.0"])])
    t = read_table(tmp_path)
    assert t.levels(10).tolist() == [0, 0, 1, 5, 9, 9]  # 1.0 would be level 10 unclamped


def test_missing_image_is_named(tmp_path):
    _image(tmp_path / "images" / "a.png")
    _write_csv(tmp_path / "mos.csv", ["image", "mos"], [["a.png", "1"], ["gone.png", "2"]])
    t = read_table(tmp_path)
    assert t.paths[0] == tmp_path / "images" / "a.png"
    with pytest.raises(ZooError, match=r"image .*gone\.png listed by dataset .* does not exist"):
        t.check_files()


# ---------------------------------------------------------------- splits


def test_random_splits_keep_references_together_and_repeat(tmp_path):
    refs = [f"r{i // 5}" for i in range(100)]  # 20 references x 5 distortions
    _write_csv(tmp_path / "m.csv", ["ref_name", "dist_name", "mos"], [[r, f"{i}.png", i] for i, r in enumerate(refs)])
    t = read_table(tmp_path)
    splits = random_splits(t, rounds=3, test_fraction=0.2, val_fraction=0.1, seed=7)
    for s in splits:
        assert sorted(np.concatenate([s["train"], s["val"], s["test"]]).tolist()) == list(range(100))
        parts = [{refs[i] for i in s[p]} for p in ("train", "val", "test")]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(parts[2]) == 4 and len(parts[1]) == 2
    assert not np.array_equal(splits[0]["test"], splits[1]["test"])
    again = random_splits(t, rounds=3, test_fraction=0.2, val_fraction=0.1, seed=7)
    assert all(np.array_equal(a["test"], b["test"]) for a, b in zip(splits, again))
    with pytest.raises(ZooError, match="too few"):
        random_splits(t.subset(range(5)), test_fraction=0.2)


def test_official_split_carves_validation_from_train():
    t = read_table(require_data("biq2021_subset"))
    s = official_split(t, val_fraction=0.1, seed=0)
    assert len(s["test"]) == 250 and len(s["val"]) == 125 and len(s["train"]) == 1125
    assert not set(s["val"]) & set(s["train"])


def _refs_table(tmp_path, n_refs=4, per_ref=5):
    """A csv-layout table of ``n_refs`` reference images with ``per_ref`` distorted images each."""
    refs = [f"r{i // per_ref}" for i in range(n_refs * per_ref)]
    _write_csv(tmp_path / "m.csv", ["ref_name", "dist_name", "mos"], [[r, f"{i}.png", i] for i, r in enumerate(refs)])
    return read_table(tmp_path), refs


def test_split_file_reads_pyiqa_format_and_refuses_bad_files(tmp_path):
    t, _ = _refs_table(tmp_path, n_refs=2, per_ref=2)
    (tmp_path / "s.pkl").write_bytes(pickle.dumps({1: {"train": [0, 1], "val": [2], "test": [3]}}))  # pyiqa's format
    back = load_split_file(tmp_path / "s.pkl", t)
    assert {p: v.tolist() for p, v in back[0].items()} == {"train": [0, 1], "val": [2], "test": [3]}
    with pytest.raises(ZooError, match="refers to row 3, but the table has 3 rows"):
        load_split_file(tmp_path / "s.pkl", t.subset(range(3)))
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({1: {"train": [0], "test": [Image.Image]}}))
    with pytest.raises(ZooError, match="not allowed in a split file"):
        load_split_file(tmp_path / "evil.pkl", t)
    (tmp_path / "empty.pkl").write_bytes(pickle.dumps({1: {"train": [0, 1], "val": [], "test": []}}))
    with pytest.raises(ZooError, match="both 'test' and 'val' are missing or empty"):
        load_split_file(tmp_path / "empty.pkl", t)


def test_pyiqa_random_split_files_hold_the_test_part_under_val(tmp_path):
    """pyiqa's random 80/20 files: no 'test' (livechallenge_seed123.pkl) or an empty one (csiq_123.pkl); 'val' is
    the held-out part. It becomes the test part and validation is carved from train, by reference image."""
    t, refs = _refs_table(tmp_path)
    train, held_out = list(range(15)), list(range(15, 20))  # references r0-r2 | r3
    (tmp_path / "s.pkl").write_bytes(pickle.dumps({1: {"train": train, "val": held_out},
                                                   2: {"train": train, "val": held_out, "test": []}}))
    for s in load_split_file(tmp_path / "s.pkl", t, val_fraction=0.1, seed=0):
        assert s["test"].tolist() == held_out
        assert sorted(s["train"].tolist() + s["val"].tolist()) == train
        assert len({refs[i] for i in s["val"]}) == 1 and len(s["val"]) == 5  # one whole reference
        assert not {refs[i] for i in s["val"]} & {refs[i] for i in s["train"]}
    assert load_split_file(tmp_path / "s.pkl", t, val_fraction=0)[0]["val"].tolist() == []
    rows = IQADataModule(split=str(tmp_path / "s.pkl"), split_index=2, val_fraction=0.1, seed=0).split_rows(t)
    assert rows["test"].tolist() == held_out and len(rows["val"]) == 5


# ---------------------------------------------------------------- crops and the DataModule


def _crop_set(tmp_path, train, n=3, crops=3, size=64):
    for i in range(n):
        _image(tmp_path / "images" / f"{i}.png", seed=i)
    _write_csv(tmp_path / "mos.csv", ["image", "mos_0_1"], [[f"{i}.png", i / 3] for i in range(n)])
    t = read_table(tmp_path)
    return IQACrops(t, np.arange(n), torch.from_numpy(t.levels(10)), size, [0.5] * 3, [0.25] * 3, crops, train)


def test_eval_crops_are_repeatable_and_train_crops_are_not(tmp_path):
    ev = _crop_set(tmp_path, train=False)
    crops, score, level, row = ev[1]
    assert crops.shape == (3, 3, 64, 64) and score == pytest.approx(1 / 3) and level == 3 and row == 1
    assert torch.equal(ev[1][0], crops) and not torch.equal(crops[0], crops[1])
    tr = _crop_set(tmp_path, train=True)
    torch.manual_seed(0)
    a = tr[1][0]
    assert not torch.equal(a, tr[1][0])
    img = (np.asarray(Image.open(tmp_path / "images" / "1.png"), dtype=np.float32) / 255 - 0.5) / 0.25
    c = crops[0].permute(1, 2, 0).numpy()  # each eval crop is a window of the normalised image
    starts = zip(*np.nonzero(np.abs(img[:240 - 63, :256 - 63] - c[0, 0]).max(-1) < 1e-5))
    assert sum(np.allclose(img[y:y + 64, x:x + 64], c, atol=1e-5) for y, x in starts) == 1


def _eval_crops(table, rows=None, seed=0, crops=3, size=64):
    rows = np.arange(len(table)) if rows is None else rows
    return IQACrops(table, rows, torch.from_numpy(table.levels(10)), size, [0.5] * 3, [0.25] * 3, crops, False,
                    seed=seed)


def test_eval_crops_follow_the_image_not_its_row(tmp_path):
    """An image gets the same evaluation crops in the whole table, in a subset of its rows (what `zoo eval` scores),
    in a reordered test-only copy in another folder (what the GPU session carries) and in a CSV of absolute paths;
    another crop seed gives other crops."""
    full = _crop_set(tmp_path / "full", train=False, n=4)
    ref = {r: full[r][0] for r in range(4)}
    assert torch.equal(_eval_crops(full.table.subset([2, 3]))[1][0], ref[3])  # row 1 there, row 3 here
    assert torch.equal(_eval_crops(full.table, rows=np.array([3, 1]))[0][0], ref[3])
    copy = tmp_path / "copy"
    (copy / "images").mkdir(parents=True)
    for i in (3, 1):
        shutil.copy2(tmp_path / "full" / "images" / f"{i}.png", copy / "images" / f"{i}.png")
    _write_csv(copy / "mos.csv", ["image", "mos_0_1"], [["3.png", 1.0], ["1.png", 1 / 3]])
    moved = _eval_crops(read_table(copy))
    assert torch.equal(moved[0][0], ref[3]) and torch.equal(moved[1][0], ref[1])
    _write_csv(tmp_path / "abs" / "mos.csv", ["image", "mos_0_1"],
               [[str(tmp_path / "full" / "images" / "2.png"), 0.5]])
    assert torch.equal(_eval_crops(read_table(tmp_path / "abs"))[0][0], ref[2])
    assert not torch.equal(_eval_crops(full.table, seed=1)[3][0], ref[3])
    paths = full.table.paths
    assert image_seed(paths[0]) != image_seed(paths[1]) and image_seed(paths[0]) != image_seed(paths[0], seed=1)
    assert 0 <= image_seed(paths[0]) < 2**63
    with pytest.raises(ZooError, match=r"cannot read image .*absent\.png"):
        image_seed(tmp_path / "absent.png")


def test_real_biq2021_test_image_gets_the_same_crops_in_the_whole_table_and_the_test_split():
    """The reviewer's case: ``zoo eval`` scores the test rows as their own table (row 0, 1, ...), the benchmark
    scripts index the whole table (row 1250, ...); both must crop the first test image alike."""
    t = read_table(require_data("biq2021_subset"))
    test = np.flatnonzero(np.asarray(t.split) == "test")
    whole = _eval_crops(t, rows=test[:1], crops=2, size=224)
    alone = _eval_crops(t.subset(test), rows=np.arange(1), crops=2, size=224)
    assert torch.equal(whole[0][0], alone[0][0])


def test_too_small_image_is_named(tmp_path):
    ds = _crop_set(tmp_path, train=False, size=300)
    with pytest.raises(ZooError, match=r"0\.png is 256x240, smaller than the 300x300 crop"):
        ds[0]


def test_unreadable_image_and_bad_csv_rows_are_named(tmp_path):
    ds = _crop_set(tmp_path, train=False)
    (tmp_path / "images" / "2.png").write_bytes(b"not a png")
    with pytest.raises(ZooError, match=r"cannot read image .*2\.png"):
        ds[2]
    _write_csv(tmp_path / "mos.csv", ["image", "mos_0_1"], [["0.png", "0.1"], ["1.png", "good"]])
    with pytest.raises(ZooError, match=r"row 3: score 'good' is not a number; fix that row"):
        read_table(tmp_path)
    _write_csv(tmp_path / "mos.csv", ["picture", "mos_0_1"], [["0.png", "0.1"]])
    with pytest.raises(ZooError, match=r"no image column found .*name it with --image-col"):
        read_table(tmp_path)


def test_datamodule_on_real_biq2021_split_and_subsets():
    require_data("biq2021_subset")
    spec = {"input_size": [3, 224, 224], "mean": [0.5] * 3, "std": [0.5] * 3}
    dm = IQADataModule("biq2021_subset", split="official", train_subset=8, val_subset=4, test_subset=6, crops=2,
                       test_crops=3, batch_size=4, num_workers=0, input_spec=spec, num_levels=10)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (8, 4, 6)
    x, score, level, row = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 2, 3, 224, 224) and level.dtype == torch.int64
    assert np.array_equal(level.numpy(), dm.table.levels(10)[row.numpy()])
    assert np.allclose(score.numpy(), dm.table.scores[row.numpy()])
    x, *_ = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 3, 3, 224, 224)
    with pytest.raises(ZooError, match="split_index 11 is out of range"):
        IQADataModule("biq2021_subset", split_index=11, input_spec=spec, num_levels=10).setup("fit")


def test_unknown_split_suggests_the_close_name(tmp_path):
    with pytest.raises(ZooError, match=r"unknown split 'offical' .*did you mean 'official'\? pass random or official"):
        IQADataModule(split="offical")
    with pytest.raises(ZooError, match=r"unknown split 'kfold' .*; pass random or official, or the path of an "):
        IQADataModule(split="kfold")
    (tmp_path / "s.pkl").write_bytes(pickle.dumps({1: {"train": [0], "test": [1]}}))
    assert IQADataModule(split=str(tmp_path / "s.pkl")).hparams.split == str(tmp_path / "s.pkl")


# ---------------------------------------------------------------- user CSVs: one clear error, never a wrong number


def test_non_finite_scores_are_refused_at_read_time_naming_the_row(tmp_path):
    """'nan' and 'inf' parse as floats; they were only caught after inference, naming no row."""
    from scipy.io import savemat

    for value in ("nan", "inf", "-Infinity"):
        _write_csv(tmp_path / "mos.csv", ["image", "mos"], [["a.png", "0.2"], ["b.png", value], ["c.png", "0.4"]])
        with pytest.raises(ZooError, match=rf"mos\.csv, row 3: score '{value}' is not a finite number"):
            read_table(tmp_path)
    livec = tmp_path / "livec"
    (livec / "Data").mkdir(parents=True)
    names = np.array([[np.array([f"t{i}.bmp"])] for i in range(9)], dtype=object)
    savemat(livec / "Data" / "AllImages_release.mat", {"AllImages_release": names})
    savemat(livec / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([[50.0] * 8 + [np.nan]])})
    with pytest.raises(ZooError, match=r"AllMOS_release\.mat, entry 9: score nan is not a finite number"):
        read_table(livec)


def test_an_image_listed_twice_is_refused_naming_its_rows(tmp_path):
    """8 images + 3 repeated rows counted as 11 and changed the SRCC; references may repeat, images may not."""
    _write_csv(tmp_path / "m.csv", ["image", "mos"], [["a.png", "1"], ["b.png", "2"], ["a.png", "1"], ["c.png", "3"]])
    with pytest.raises(ZooError, match=r"image .*a\.png is listed 2 times by dataset .*m\.csv, row 2; .*m\.csv, "
                                       r"row 4\); each image takes one row"):
        read_table(tmp_path)
    _write_csv(tmp_path / "m.csv", ["image", "mos"], [["a.png", "1"], ["images/a.png", "2"], ["b.png", "3"]])
    _image(tmp_path / "images" / "a.png")  # both names resolve to images/a.png
    with pytest.raises(ZooError, match=r"a\.png is listed 2 times"):
        read_table(tmp_path)
    biq = _layouts(tmp_path / "layouts")["biq2021"]  # one image in Train.csv and Test.csv: a leak
    _write_csv(biq / "Test.csv", ["Image Name", "MOS"], [["ss03 (9).jpg", "0.5"]])
    with pytest.raises(ZooError, match=r"ss03 \(9\)\.jpg is listed 2 times .*Train\.csv, row 3; .*Test\.csv, row 2"):
        read_table(biq)


def test_scores_outside_the_declared_scale_are_refused_not_clamped(tmp_path):
    """mos_0_1 scores up to 2.0 became levels [0, 9, 9, ...]; rounding at the ends still clamps."""
    _write_csv(tmp_path / "m.csv", ["image", "mos_0_1"], [["a.png", "0"], ["b.png", "1.0004"], ["c.png", "1.5"],
                                                          ["d.png", "2.0"]])
    t = read_table(tmp_path)
    with pytest.raises(ZooError, match=r"m\.csv, row 4: score 1\.5 is outside the score scale \[0, 1\] of dataset "
                                       r".* \(2 of 4 scores are\); .*score_range: \[low, high\]"):
        t.levels(10)
    assert t.subset([0, 1]).levels(10).tolist() == [0, 9]
    assert read_table(tmp_path, score_range=[0, 2]).levels(10).tolist() == [0, 5, 7, 9]
    with pytest.raises(ZooError, match=r"score_range \[2, 1\] is empty"):
        read_table(tmp_path, score_range=[2, 1])
    spec = {"input_size": [3, 64, 64], "mean": [0.5] * 3, "std": [0.5] * 3}
    for name in "abcd":
        _image(tmp_path / "images" / f"{name}.png", size=(64, 64))
    dm = IQADataModule(str(tmp_path), split="random", test_fraction=0.25, val_fraction=0.25, num_workers=0,
                       input_spec=spec, num_levels=10)
    with pytest.raises(ZooError, match=r"row 4: score 1\.5 is outside the score scale \[0, 1\]"):
        dm.setup("fit")


def test_csv_in_latin1_is_one_error_naming_the_line_and_the_fix(tmp_path):
    (tmp_path / "m.csv").write_bytes("image,mos,note\na.png,1,ok\nb.png,2,café\n".encode("latin-1"))
    with pytest.raises(ZooError, match=r"m\.csv, line 3: byte 0xe9 is not UTF-8 .*save the file as UTF-8"):
        read_table(tmp_path)
    (tmp_path / "m.csv").write_bytes("\ufeffimage,mos,note\na.png,1,ok\nb.png,2,café\n".encode("utf-8"))
    assert read_table(tmp_path).scores.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("text", ["image, mos\na.png, 0.5\nb.png, 0.7\n", "Image,MOS\na.png,0.5\nb.png,0.7\n",
                                  "image;mos\na.png;0.5\nb.png;0.7\n", "image\tmos\r\na.png\t0.5\r\nb.png\t0.7\r\n",
                                  "image,mos\na.png,0.5\n\n,\nb.png,0.7\n,,\n"])
def test_csv_spaces_case_delimiters_and_blank_rows(tmp_path, text):
    """Header spaces, upper case, ';' and tab separators, CRLF and empty rows read as the plain CSV does."""
    (tmp_path / "m.csv").write_text(text)
    t = read_table(tmp_path)
    assert [p.name for p in t.paths] == ["a.png", "b.png"] and t.scores.tolist() == [0.5, 0.7]


def test_csv_row_errors_name_the_real_line(tmp_path):
    """Row numbers are line numbers (blank lines counted); short, overlong and nameless rows are refused."""
    cases = [("image,mos\na.png,0.5\n\n\nb.png,x\n", r"row 5: score 'x' is not a number"),
             ("image,mos\na.png,0.5\nb.png\n", r"row 3 has 1 cell\(s\) for the 2 columns .*fill in its missing cells"),
             ("image,mos\na.png,0,53\n", r"row 2 has 3 cell\(s\) .*quote a cell that holds the separator"),
             ("image,mos\n,0.5\n", r"row 2: the image name is empty"),
             ('image,mos\na.png,"0,53"\n', r"row 2: score '0,53' is not a number \(write the decimal with a point"),
             ("image,quality\na.png,1\n", r"no score column found .*columns: 'image', 'quality'\)")]
    for text, message in cases:
        (tmp_path / "m.csv").write_text(text)
        with pytest.raises(ZooError, match=message):
            read_table(tmp_path)
    (tmp_path / "m.csv").unlink()
    (tmp_path / "scores.txt").write_text("image\tmos\na.png\t1\n")
    with pytest.raises(ZooError, match=r"found none \(the folder has scores\.txt\); .*--csv FILE"):
        read_table(tmp_path)
    assert read_table(tmp_path, csv_path=tmp_path / "scores.txt").scores.tolist() == [1.0]


def test_a_layout_file_without_its_columns_is_one_error(tmp_path):
    """A user's own Test.csv made the folder look like BIQ2021 and failed with KeyError: 'Image Name'."""
    _write_csv(tmp_path / "Train.csv", ["image", "mos"], [["a.png", "1"]])
    _write_csv(tmp_path / "Test.csv", ["image", "mos"], [["b.png", "2"]])
    with pytest.raises(ZooError, match=r"Train\.csv has no column 'Image Name' \(columns: 'image', 'mos'\); .*"
                                       r"--layout csv --csv .*Train\.csv"):
        read_table(tmp_path)
    assert read_table(tmp_path, layout="csv", csv_path=tmp_path / "Test.csv").scores.tolist() == [2.0]


def test_missing_or_folder_image_names_its_row(tmp_path):
    _image(tmp_path / "images" / "a.png")
    _write_csv(tmp_path / "m.csv", ["image", "mos"], [["a.png", "1"], ["images", "2"], ["gone.png", "3"]])
    with pytest.raises(ZooError, match=r"images listed by dataset .* is a folder, not an image file \(.*m\.csv, row 3; "
                                       r"and 1 more\)"):
        read_table(tmp_path).check_files()


def test_datamodule_refuses_bad_subsets_resize_and_constant_or_missing_parts(tmp_path):
    spec = {"input_size": [3, 64, 64], "mean": [0.5] * 3, "std": [0.5] * 3}
    with pytest.raises(ZooError, match=r"train_subset=0: a subset takes at least 1 row"):
        IQADataModule(train_subset=0)
    for i in range(8):
        _image(tmp_path / "images" / f"{i}.png", size=(64, 64), seed=i)
    rows = [[f"{i}.png", i / 8, "test" if i >= 4 else "train"] for i in range(8)]
    _write_csv(tmp_path / "m.csv", ["image", "mos_0_1", "split"], rows)
    common = {"data": str(tmp_path), "split": "official", "val_fraction": 0.25, "num_workers": 0,
              "input_spec": spec, "num_levels": 10}
    with pytest.raises(ZooError, match=r"resize \[0, 64\] is not a size"):
        IQADataModule(**common, resize=[0, 64]).setup("fit")
    rows = [[r[0], 0.5 if r[2] == "test" else r[1], r[2]] for r in rows]
    _write_csv(tmp_path / "m.csv", ["image", "mos_0_1", "split"], rows)
    with pytest.raises(ZooError, match=r"all 4 images of the test part have score 0\.5, so its correlations are "
                                       r"undefined"):
        IQADataModule(**common).setup("fit")
    _write_csv(tmp_path / "m.csv", ["image", "mos_0_1", "split"], [[r[0], r[1], "train"] for r in rows])
    with pytest.raises(ZooError, match=r"the official split has no 'test' rows \(its labels: train\)"):
        IQADataModule(**common).setup("fit")


def test_selection_on_validation_needs_three_validation_images(tmp_path):
    """With select_on_val, a validation part of fewer than 3 images has no SRCC: no epoch was selected and the last
    one kept without a word. It is refused when fitting starts, naming val_fraction / val_subset and the way out;
    a module that does not select, and a test-only run, go on."""
    from types import SimpleNamespace

    spec = {"input_size": [3, 64, 64], "mean": [0.5] * 3, "std": [0.5] * 3}
    for i in range(8):
        _image(tmp_path / "images" / f"{i}.png", size=(64, 64), seed=i)
    _write_csv(tmp_path / "m.csv", ["image", "mos_0_1", "split"],
               [[f"{i}.png", i / 8, "test" if i >= 4 else "train"] for i in range(8)])

    def setup(select_on_val, stage="fit", **kwargs):
        dm = IQADataModule(data=str(tmp_path), split="official", num_workers=0, input_spec=spec, num_levels=10,
                           **kwargs)
        dm.trainer = SimpleNamespace(lightning_module=SimpleNamespace(hparams={"select_on_val": select_on_val}))
        dm.setup(stage)
        return dm

    with pytest.raises(ZooError, match=r"the validation part has 2 image\(s\), and selecting the epoch on validation "
                                       r"SRCC \(select_on_val\) needs at least 3; raise val_fraction \(now 0\.5\) or "
                                       r"val_subset \(now None\), or keep the last epoch with the model's "
                                       r"select_on_val: false"):
        setup(True, val_fraction=0.5)
    with pytest.raises(ZooError, match=r"validation part has 0 image\(s\)"):
        setup(True, val_fraction=0.0)
    with pytest.raises(ZooError, match=r"validation part has 2 image\(s\).*val_subset \(now 2\)"):
        setup(True, val_fraction=0.75, val_subset=2)
    assert len(setup(True, val_fraction=0.75).rows["val"]) == 3
    assert len(setup(False, val_fraction=0.5).rows["val"]) == 2
    assert len(setup(True, "test", val_fraction=0.5).rows["val"]) == 2
