"""CMT's training log (`zoo/models/cmt/masked_training.md`) and the model card's GT-paste loss table against the
committed files they cite: final NDS / mAP against `results/{run}{,_nolidar,_nocamera}.synthetic_val.det3d.json`,
and the per-epoch loss and validation NDS of the runs whose `results/{run}.metrics.csv` is committed
(`CURVE_RUNS`). The other runs' curves were read from `metrics.csv` files that stayed on the development machine,
and their cells are not read. How tables are read and compared: `card_tables`.

Each table maps its rows' labels to run names; a new row needs one entry there (and its run in `CURVE_RUNS` if its
`metrics.csv` is committed)."""

from __future__ import annotations

import csv
import re
from functools import cache

from card_tables import CMT, ROOT, compare, label, load, numbers_in, table_under

LOG = CMT / "masked_training.md"
DROPPED = {"both sensors": "", "LiDAR dropped": "_nolidar", "cameras dropped": "_nocamera"}
LOSS, VAL_NDS = ("train/loss_cls_epoch", 1), ("val/NDS", 100)
# the runs whose whole `metrics.csv` is committed in results/
CURVE_RUNS = {
    "cmt_tiny_camera_cmtc_aug_cbgs_8000steps",
    "cmt_tiny_camera_pytorchinit_8000steps",
    "cmt_tiny_fusion_pytorchinit_5982steps",
    "cmt_tiny_fusion_nomask_pytorchinit_8000steps",
    "cmt_tiny_lidar_pytorchinit_8000steps",
    "cmt_tiny_lidar_pytorchinit_gtpaste_cbgs_8000steps",
    "cmt_tiny_lite0_camera_pytorchinit_8000steps",
    "cmt_tiny_lite0_fusion_pytorchinit_8000steps",
}


@cache
def metrics(run: str) -> tuple[dict[str, str], ...]:
    """The rows of `results/{run}.metrics.csv` (Lightning's CSV logger: epochs counted from 0)."""
    path = CMT / "results" / f"{run}.metrics.csv"
    assert path.is_file(), f"run {run!r}: its metrics file {path.relative_to(ROOT)} does not exist"
    with path.open() as file:
        return tuple(csv.DictReader(file))


def logged(run: str, key: str, epoch: int) -> float:
    """The value ``key`` logged in epoch ``epoch`` (counted from 0) of ``run``'s `metrics.csv`."""
    values = [float(row[key]) for row in metrics(run) if row["epoch"] == str(epoch) and row[key]]
    assert len(values) == 1, f"{run}.metrics.csv: {len(values)} values of {key} in epoch {epoch}, the card needs one"
    return values[0]


def check_nds_map(cell: str, run: str, suffix: str, where: str, mismatches: list[str]) -> None:
    """A cell's "NDS / mAP" (in %; a parenthesis after it is not read) against
    `results/{run}{suffix}.synthetic_val.det3d.json`, or its "a / b / c NDS" against the NDS of ``run``,
    `{run}_seed1` and `{run}_seed2` (each with ``suffix``)."""
    printed = numbers_in(cell.split("(")[0])
    if cell.endswith(" NDS"):
        names = [run + suffix] + [f"{run}_seed{seed}{suffix}" for seed in range(1, len(printed))]
        for nds, name in zip(printed, names):
            result = load(CMT / "results" / f"{name}.synthetic_val.det3d.json", where)
            compare(nds, 100 * result["NDS"], f"{where} NDS ({name})", mismatches)
        return
    assert len(printed) == 2, f"{where}: {cell!r} is not one NDS / mAP pair"
    name = run + suffix
    result = load(CMT / "results" / f"{name}.synthetic_val.det3d.json", where)
    compare(printed[0], 100 * result["NDS"], f"{where} NDS ({name})", mismatches)
    compare(printed[1], 100 * result["mAP"], f"{where} mAP ({name})", mismatches)


def check_curve(column: str, cell: str, run: str, source: tuple[str, float], first: int, where: str,
                mismatches: list[str]) -> None:
    """A per-epoch cell ("0.437 / 0.436 / - / - (0.424 at 70)") against ``run``'s `metrics.csv`: the epochs are the
    column header's numbers, the card's epoch ``first`` being the file's epoch 0; "(x at N)" adds epoch N, "(at N)"
    moves the last value to epoch N; a "-" is an epoch not run."""
    key, scale = source
    values, extra = re.fullmatch(r"(.*?)(?: \((.*)\))?", cell).groups()
    values = [value.strip() for value in values.split("/")]
    epochs = [int(epoch) for epoch in re.findall(r"\d+", column.split("epoch")[-1])]
    assert len(values) == len(epochs), f"{where}, {column}: {len(values)} values for {len(epochs)} epochs"
    points = list(zip(epochs, values))
    if extra:
        moved = re.fullmatch(r"(\S+ )?at (\d+)", extra)
        assert moved, f"{where}, {column}: no epoch in ({extra})"
        value, epoch = moved.groups()
        points.append((int(epoch), value.strip() if value else points.pop()[1]))
    for epoch, printed in points:
        if printed != "-":
            actual = scale * logged(run, key, epoch - first)
            compare(printed, actual, f"{where}, {column} at epoch {epoch} ({run}.metrics.csv {key})", mismatches)


def check_rows(anchor: str, labels: tuple[str, ...], runs: dict[str, str], finals: dict[str, str],
               curves: dict[str, tuple[tuple[str, float], int]]) -> list[str]:
    """The mismatches of the training log's table under ``anchor``: each row's run from its ``labels`` columns,
    ``finals`` ({column: suffix of the det3d file}) and, for a run in `CURVE_RUNS`, ``curves`` ({column: ((key,
    scale), the card's number of the file's epoch 0)}); a "-" cell is a run not made; a "paper" row is not read."""
    mismatches = []
    for row in table_under(LOG, anchor):
        where = label(row, *labels)
        if where.startswith("paper"):
            continue
        assert where in runs, f"row {where!r}: no result file known for it"
        for column, suffix in finals.items():
            if row[column] != "-":
                check_nds_map(row[column], runs[where], suffix, f"{where}, {column}", mismatches)
        if runs[where] in CURVE_RUNS:
            for column, (source, first) in curves.items():
                check_curve(column, row[column], runs[where], source, first, where, mismatches)
    return mismatches


# the 480-step table's models (a "the same model, X dropped" row: the row above's run with X dropped)
RUNS_480 = {
    "fusion with masked-modal training, both sensors": "cmt_tiny_fusion",
    "LiDAR only (CMT-L)": "cmt_tiny_lidar",
    "camera only (CMT-C)": "cmt_tiny_camera",
    "fusion without masked-modal training, both sensors": "cmt_tiny_fusion_nomask",
}


def test_cmt_log_480_step_table_matches_its_det3d_files():
    """Training log, "Result at 480 steps" ("| model, evaluated with | paper | zoo | command |"): the zoo column's
    NDS / mAP of each row against `results/{run}.synthetic_val.det3d.json`, "the same model, LiDAR / cameras
    dropped" rows against the row above's `{run}_nolidar` / `{run}_nocamera` file. The paper column is not read."""
    mismatches = []
    run = None
    for row in table_under(LOG, "| model, evaluated with | paper | zoo | command |"):
        model = row["model, evaluated with"]
        dropped = re.fullmatch(r"the same model, (LiDAR dropped|cameras dropped)", model)
        if not dropped:
            assert model in RUNS_480, f"row {model!r}: no result file known for it"
            run = RUNS_480[model]
        check_nds_map(row["zoo"], run, DROPPED[dropped[1]] if dropped else "", model, mismatches)
    assert not mismatches, mismatches


def test_cmt_log_4800_step_table_matches_its_det3d_files():
    """Training log, the 4 800-step table ("| epoch 60 (final model) |"): the final model's NDS / mAP with both
    sensors and each dropped against `results/cmt_tiny_{fusion,camera}_4800steps{,_nolidar,_nocamera}.synthetic_val
    .det3d.json`. Epochs 20 and 40 (the runs' `metrics.csv`, not committed) are not read."""
    runs = {"fusion, masked-modal": "cmt_tiny_fusion_4800steps", "camera only": "cmt_tiny_camera_4800steps"}
    finals = {"epoch 60 (final model)": "", "LiDAR dropped": "_nolidar", "cameras dropped": "_nocamera"}
    mismatches = check_rows("| epoch 60 (final model) |", ("run",), runs, finals, {})
    assert not mismatches, mismatches


def test_cmt_log_8000_step_fusion_table_matches_its_det3d_files():
    """Training log, the 8 000-step fusion table ("| run | val NDS at epoch 20 / 40 / 60 / 80 / 100 | both
    sensors |"): NDS / mAP with both sensors and each dropped against `results/cmt_tiny_fusion{,_nomask}_8000steps
    {,_nolidar,_nocamera}.synthetic_val.det3d.json`. The validation NDS (the runs' `metrics.csv`, not committed) and
    the paper row are not read."""
    runs = {"fusion, masked-modal training": "cmt_tiny_fusion_8000steps",
            "fusion, no masking": "cmt_tiny_fusion_nomask_8000steps"}
    mismatches = check_rows("| run | val NDS at epoch 20 / 40 / 60 / 80 / 100 | both sensors |", ("run",), runs,
                            DROPPED, {})
    assert not mismatches, mismatches


def test_cmt_log_imagenet_backbone_table_matches_its_det3d_files():
    """Training log, the ImageNet-backbone table ("| run, 8 000 steps | val NDS at epoch 20 / 40 / 60 / 80 / 100
    |"): NDS / mAP with both sensors and each dropped against `results/cmt_tiny{,_lite0}_{camera,fusion}_8000steps
    {,_nolidar,_nocamera}.synthetic_val.det3d.json`. The validation NDS (not committed) is not read."""
    runs = {"camera only, ImageNet EfficientNet-Lite0": "cmt_tiny_lite0_camera_8000steps",
            "camera only, random narrow ResNet-18 (above)": "cmt_tiny_camera_8000steps",
            "fusion, masked, ImageNet EfficientNet-Lite0": "cmt_tiny_lite0_fusion_8000steps",
            "fusion, masked, random narrow ResNet-18 (above)": "cmt_tiny_fusion_8000steps"}
    mismatches = check_rows("| run, 8 000 steps | val NDS at epoch 20 / 40 / 60 / 80 / 100 |", ("run, 8 000 steps",),
                            runs, DROPPED, {})
    assert not mismatches, mismatches


def test_cmt_log_head_init_camera_and_masked_table_matches_its_files():
    """Training log, the camera-only and masked head-init table ("| run | head init | loss at epoch 20 / 40 / 60 /
    80 / 100 |"): final NDS / mAP with both sensors and each dropped against `results/{run}{,_nolidar,_nocamera}
    .synthetic_val.det3d.json`, and the PyTorch's-init rows' loss (`train/loss_cls_epoch`) and val NDS at epoch N
    (the N-th epoch, the file's N - 1) against `results/cmt_tiny_{camera_pytorchinit_8000steps,
    fusion_pytorchinit_5982steps}.metrics.csv`. The declared-init rows' curves (not committed) are not read."""
    runs = {"camera only / PyTorch's": "cmt_tiny_camera_pytorchinit_8000steps",
            "camera only (above) / declared": "cmt_tiny_camera_8000steps",
            "fusion, masked-modal training / PyTorch's": "cmt_tiny_fusion_pytorchinit_5982steps",
            "fusion, masked-modal training (above) / declared": "cmt_tiny_fusion_8000steps",
            "fusion, no masking (above) / declared": "cmt_tiny_fusion_nomask_8000steps"}
    finals = {"final NDS / mAP %, both sensors": "", "LiDAR dropped": "_nolidar", "cameras dropped": "_nocamera"}
    curves = {"loss at epoch 20 / 40 / 60 / 80 / 100": (LOSS, 1),
              "val NDS % at epoch 20 / 40 / 60 / 80 / 100": (VAL_NDS, 1)}
    mismatches = check_rows("| run | head init | loss at epoch 20 / 40 / 60 / 80 / 100 |", ("run", "head init"),
                            runs, finals, curves)
    assert not mismatches, mismatches


def test_cmt_log_head_init_lidar_and_unmasked_table_matches_its_files():
    """Training log, the LiDAR-only and unmasked head-init table ("| classifier leaves its prior |"): final NDS /
    mAP with both sensors and each dropped against `results/{run}{,_nolidar,_nocamera}.synthetic_val.det3d.json`
    (the seeds row's "a / b / c NDS" against the run's seed 0, `_seed1` and `_seed2` files), and the PyTorch's-init
    rows' val NDS at epoch N (the file's N - 1) against `results/cmt_tiny_{lidar,fusion_nomask}_pytorchinit_8000steps
    .metrics.csv`. The "classifier leaves its prior" column and the declared-init rows' curves are not read."""
    runs = {"LiDAR only / PyTorch's": "cmt_tiny_lidar_pytorchinit_8000steps",
            "LiDAR only / declared": "cmt_tiny_lidar_8000steps",
            "fusion, no masking / PyTorch's": "cmt_tiny_fusion_nomask_pytorchinit_8000steps",
            "fusion, no masking, seeds 0 / 1 / 2 / declared": "cmt_tiny_fusion_nomask_8000steps"}
    finals = {"final, both sensors": "", "LiDAR dropped": "_nolidar", "cameras dropped": "_nocamera"}
    curves = {"val NDS at epoch 20 / 40 / 60 / 80 / 100": (VAL_NDS, 1)}
    mismatches = check_rows("| classifier leaves its prior |", ("run", "head init"), runs, finals, curves)
    assert not mismatches, mismatches


def test_cmt_log_lidar_gtpaste_head_init_table_matches_its_files():
    """Training log, the LiDAR-only GT-paste + CBGS head-init table ("| head init | loss at epoch 2 / 4 / 6 / 8 /
    10 |"): final NDS / mAP against `results/cmt_tiny_lidar{_pytorchinit,}_gtpaste_cbgs_8000steps.synthetic_val
    .det3d.json`, and the PyTorch's row's loss and val NDS at epoch N (the file's epoch N, as the card counts here)
    against `results/cmt_tiny_lidar_pytorchinit_gtpaste_cbgs_8000steps.metrics.csv`. The declared row's curves
    (not committed) are not read."""
    runs = {"PyTorch's (the default)": "cmt_tiny_lidar_pytorchinit_gtpaste_cbgs_8000steps",
            "declared": "cmt_tiny_lidar_gtpaste_cbgs_8000steps"}
    curves = {"loss at epoch 2 / 4 / 6 / 8 / 10": (LOSS, 0), "val NDS at epoch 1 / 3 / 5 / 7 / 9": (VAL_NDS, 0)}
    mismatches = check_rows("| head init | loss at epoch 2 / 4 / 6 / 8 / 10 |", ("head init",), runs,
                            {"final NDS / mAP %": ""}, curves)
    assert not mismatches, mismatches


# the default-init `cmt_tiny_lite0` table's runs
RUNS_LITE0_DEFAULT_INIT = {
    "masked, `cmt_tiny_lite0`, default init": "cmt_tiny_lite0_fusion_pytorchinit_8000steps",
    "masked, `cmt_tiny_lite0`, declared init (\"From ImageNet weights...\" above)": "cmt_tiny_lite0_fusion_8000steps",
    "not masked, `cmt_tiny`, default init (above)": "cmt_tiny_fusion_nomask_pytorchinit_8000steps",
    "camera only, `cmt_tiny_lite0`, default init (below)": "cmt_tiny_lite0_camera_pytorchinit_8000steps",
}


def test_cmt_log_lite0_default_init_table_matches_its_files():
    """Training log, the default-init `cmt_tiny_lite0` table ("| run, 8 000 steps | last layer's loss_cls at
    epoch"): NDS / mAP with both sensors and each dropped against `results/{run}{,_nolidar,_nocamera}.synthetic_val
    .det3d.json`, and for runs with a committed `metrics.csv` the loss at epoch N (the file's epoch N, as this
    column counts; "(at 90)" moves the value) and the val NDS at epoch N (the file's N - 1) against
    `results/{run}.metrics.csv`. The declared-init row's val NDS (not committed) is not read."""
    curves = {"last layer's loss_cls at epoch 20 / 40 / 60 / 80 / 99": (LOSS, 0),
              "val NDS at epoch 20 / 40 / 60 / 80 / 100": (VAL_NDS, 1)}
    mismatches = check_rows("| run, 8 000 steps | last layer's loss_cls at epoch", ("run, 8 000 steps",),
                            RUNS_LITE0_DEFAULT_INIT, DROPPED, curves)
    assert not mismatches, mismatches


# the model card's GT-paste + CBGS table's runs, and the run "without both" (GT-paste and CBGS) a row cites
RUNS_GT_PASTE = {
    "no masking, GT-paste + CBGS": "cmt_tiny_fusion_nomask_gtpaste_cbgs_8000steps",
    "masked, GT-paste + CBGS": "cmt_tiny_fusion_gtpaste_cbgs_8000steps",
    "LiDAR only, GT-paste (points; no images loaded) + CBGS, as the authors' CMT-L":
        "cmt_tiny_lidar_gtpaste_cbgs_8000steps",
    "camera only, GT-paste + CBGS (the authors' CMT-C uses CBGS alone)": "cmt_tiny_camera_gtpaste_cbgs_8000steps",
    "camera only, CBGS alone and the CMT-C augmentation, as the authors' CMT-C (no GT-paste: its prior sits near 0.42, "
    "not 0.58)": "cmt_tiny_camera_cmtc_aug_cbgs_8000steps",
}
WITHOUT_GT_PASTE = {"cmt_tiny_lidar_gtpaste_cbgs_8000steps": "cmt_tiny_lidar_8000steps",
                    "cmt_tiny_camera_gtpaste_cbgs_8000steps": "cmt_tiny_camera_8000steps"}


def test_cmt_card_gt_paste_table_matches_its_files():
    """CMT card, the GT-paste + CBGS table ("| run | loss at epoch 2 / 4 / 6 / 8 / 10 |"): the final column's
    "both, LiDAR dropped, cameras dropped" NDS / mAP pairs against `results/{run}{,_nolidar,_nocamera}.synthetic_val
    .det3d.json` and its "(without both: ...)" pair against the same recipe's run without GT-paste and CBGS, and for
    runs with a committed `metrics.csv` (the CMT-C row) the loss and val NDS at epoch N (the file's epoch N, as the
    card counts here) against `results/{run}.metrics.csv`. The other rows' curves (not committed) are not read."""
    final = "final: both / LiDAR dropped / cameras dropped"
    curves = {"loss at epoch 2 / 4 / 6 / 8 / 10": (LOSS, 0), "val NDS at epoch 1 / 3 / 5 / 7 / 9": (VAL_NDS, 0)}
    mismatches = []
    for row in table_under(CMT / "README.md", "| run | loss at epoch 2 / 4 / 6 / 8 / 10 |"):
        where = row["run"]
        assert where in RUNS_GT_PASTE, f"row {where!r}: no result file known for it"
        run = RUNS_GT_PASTE[where]
        cell, _, without = row[final].partition("(without both: ")
        for pair, (column, suffix) in zip(cell.split(","), DROPPED.items()):
            check_nds_map(pair.strip(), run, suffix, f"{where}, {column}", mismatches)
        if without:
            assert run in WITHOUT_GT_PASTE, f"row {where!r}: no result file known for its run without both"
            check_nds_map(without.rstrip(")"), WITHOUT_GT_PASTE[run], "", f"{where}, without both", mismatches)
        if run in CURVE_RUNS:
            for column, (source, first) in curves.items():
                check_curve(column, row[column], run, source, first, where, mismatches)
    assert not mismatches, mismatches
