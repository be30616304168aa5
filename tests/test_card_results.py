"""The model cards' results tables against the committed result files they cite (DOORPING's Tables 1-2 and
cross-architecture table, kNN-OOD's OOD and weights tables, PMT-IQA's evaluation and ablations, TinyMIM's seed
tables, the drums table, CMT's summary and head-init tables); how tables are read and compared: `card_tables`."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from card_tables import (
    CMT,
    DOORPING,
    DRUMS,
    KNN,
    PMT,
    TINYMIM,
    compare,
    label,
    load,
    mean_and_std,
    numbers_in,
    table_under,
)

DOORPING_DATA = {"Fashion-MNIST": "fashion_mnist", "CIFAR-10 (JPEG)": "cifar10_jpeg"}
DOORPING_NETWORKS = {"AlexNet-CIFAR": "alexnet", "VGG11": "vgg11", "ResNet18": "resnet18"}


def doorping_set(data: str, attack: str, row: str) -> str:
    """The file-name stem of a row's set from its data and attack labels, e.g. "dc_fashion_mnist_none.control10"."""
    assert data in DOORPING_DATA, f"row {row!r}: no result file for data {data!r}"
    if "positive control" in attack:
        suffix = "none.control10"
    elif "DOORPING trigger" in attack:
        suffix = "none.doorping_trigger"
    else:
        assert attack in ("none", "naive", "doorping"), f"row {row!r}: no result file for attack {attack!r}"
        suffix = attack
    return f"{DOORPING_DATA[data]}_{suffix}"


def check_doorping_row(row: dict[str, str], file: Path, where: str, mismatches: list[str]) -> dict:
    """The CTA, ASR (each "mean ± std" or one number) and ASR incl. target columns against ``file``."""
    result = load(file, where)
    for column, key in (("CTA zoo", "cta"), ("ASR zoo", "asr"), ("ASR incl. zoo", "asr_incl_target")):
        mean, std = mean_and_std(row[column])
        compare(mean, 100 * result[key], f"{where}, {column} ({file.name} {key})", mismatches)
        if std is not None:
            compare(std, 100 * result[f"{key}_std"], f"{where}, {column} std ({file.name} {key}_std)", mismatches)
    return result


def test_doorping_table_1_matches_its_eval100x3_files():
    """DOORPING card, "Table 1: 3 networks x 100 epochs": CTA ± std, ASR ± std and ASR incl. target of every row
    against `results/{method}_{data}_{attack}.eval100x3.json` (the "clean set, DOORPING trigger" rows:
    `..._none.doorping_trigger.eval100x3.json`; the positive control: `..._none.control10.eval100x3.json`)."""
    mismatches = []
    for row in table_under(DOORPING / "README.md", "Table 1: 3 networks x 100 epochs"):
        where = label(row, "data", "method", "attack")
        stem = f"{row['method'].lower()}_{doorping_set(row['data'], row['attack'], where)}"
        check_doorping_row(row, DOORPING / "results" / f"{stem}.eval100x3.json", where, mismatches)
    assert not mismatches, mismatches


def test_doorping_cross_architecture_table_matches_its_eval100_files():
    """DOORPING card, the cross-architecture table under "Cross-architecture (1 network x 100 epochs": CTA, ASR and
    ASR incl. target per data, network and attack against `results/dc_{data}_{attack}.{net}.eval100.json` (the
    "clean set, DOORPING trigger" rows: `dc_{data}_none.doorping_trigger.{net}.eval100.json`)."""
    mismatches = []
    for row in table_under(DOORPING / "README.md", "Cross-architecture (1 network x 100 epochs"):
        where = label(row, "data", "network", "attack")
        network = re.match(r"[\w-]+", row["network"])[0]
        assert network in DOORPING_NETWORKS, f"row {where!r}: no result file for network {network!r}"
        stem = f"dc_{doorping_set(row['data'], row['attack'], where)}.{DOORPING_NETWORKS[network]}"
        result = check_doorping_row(row, DOORPING / "results" / f"{stem}.eval100.json", where, mismatches)
        assert result["models"] == 1 and result["epochs"] == 100, f"{where}: {stem} is not 1 network x 100 epochs"
    assert not mismatches, mismatches


def test_doorping_table_2_matches_its_eval25_files():
    """DOORPING card, "Table 2: 2 networks x 25 epochs": CTA ± std, ASR ± std, ASR incl. target and the ASR of each
    network against `results/dc_{data}_{attack}.eval25.json` (`per_model`)."""
    mismatches = []
    for row in table_under(DOORPING / "README.md", "Table 2: 2 networks x 25 epochs"):
        where = label(row, "data", "attack")
        file = DOORPING / "results" / f"dc_{doorping_set(row['data'], row['attack'], where)}.eval25.json"
        result = check_doorping_row(row, file, where, mismatches)
        per_network = numbers_in(row["ASR per network"])
        assert len(per_network) == len(result["per_model"]), f"{where}: {file.name} has another number of networks"
        for i, (printed, network) in enumerate(zip(per_network, result["per_model"])):
            compare(printed, 100 * network["asr"], f"{where}, ASR of network {i} ({file.name})", mismatches)
    assert not mismatches, mismatches


KNN_SCORERS = {"kNN": "knn", "MSP": "msp", "energy": "energy", "Mahalanobis": "mahalanobis"}


def test_knn_ood_tables_match_their_ood_files():
    """kNN-OOD card, the table under each "**MODEL**" line of "Reproduction": FPR95 / AUROC per OOD set and scorer
    and the "average" row against `results/{MODEL}.ood.json` (`results`, `average`), and the line's "ID accuracy"
    against its `id_accuracy`."""
    mismatches = []
    headings = re.findall(r"^\*\*(knn_ood_\S+)\*\*(.*)$", (KNN / "README.md").read_text(), re.MULTILINE)
    assert headings, "the kNN-OOD card has no **MODEL** tables"
    for model, heading in headings:
        file = KNN / "results" / f"{model}.ood.json"
        result = load(file, model)
        rows = table_under(KNN / "README.md", f"**{model}**")
        accuracy = re.search(r"ID accuracy (\S+) %", heading)
        assert accuracy, f"{model}: the card's heading line states no ID accuracy"
        compare(accuracy[1], 100 * result["id_accuracy"], f"{model} ID accuracy ({file.name})", mismatches)
        assert [row["OOD set"] for row in rows] == [*result["n_ood"], "average"], f"{model}: other OOD sets"
        for row in rows:
            for column, scorer in KNN_SCORERS.items():
                if row["OOD set"] == "average":
                    (scores,) = [r for r in result["average"] if r["scorer"] == scorer]
                else:
                    (scores,) = [r for r in result["results"] if r["scorer"] == scorer and r["ood"] == row["OOD set"]]
                fpr95, auroc = numbers_in(row[column])
                where = f"{model}, {row['OOD set']}, {column}"
                compare(fpr95, 100 * scores["fpr95"], f"{where} FPR95 ({file.name})", mismatches)
                compare(auroc, 100 * scores["auroc"], f"{where} AUROC ({file.name})", mismatches)
    assert not mismatches, mismatches


def test_knn_ood_weights_table_top1_matches_the_classification_files():
    """kNN-OOD card, the "Weights" table ("CIFAR-10 top-1, paper / zoo"): the zoo top-1 (the bold number) of each
    `name.tag` against `results/{name.tag}.classification.json` (`top1`)."""
    mismatches = []
    for row in table_under(KNN / "README.md", "CIFAR-10 top-1, paper / zoo"):
        key = row["name.tag"].strip("`")
        zoo_top1 = re.search(r"\*\*(\S+) %\*\*", row["CIFAR-10 top-1, paper / zoo"])
        assert zoo_top1, f"row {key!r}: no zoo top-1 (bold) in the card"
        result = load(KNN / "results" / f"{key}.classification.json", key)
        compare(zoo_top1[1], 100 * result["top1"], f"{key} top-1", mismatches)
    assert not mismatches, mismatches


PMT_METRICS = {"SRCC": "srcc", "PLCC": "plcc", "KRCC": "krcc", "PLCC after 4-parameter logistic": "plcc_logistic"}
PMT_SCHEDULES = {"progressive": "pmt", "regression": "regression", "fixed": "fixed"}


def test_pmt_iqa_evaluation_table_matches_its_eval_file():
    """PMT-IQA card, the published weights' table ("| metric | paper (ResNet-50 ..."): each metric's zoo column
    against `results/eval_biq2021_test.json`."""
    result = json.loads((PMT / "results" / "eval_biq2021_test.json").read_text())
    mismatches = []
    for row in table_under(PMT / "README.md", "| metric | paper (ResNet-50"):
        assert row["metric"] in PMT_METRICS, f"row {row['metric']!r}: no key in eval_biq2021_test.json"
        zoo_column = next(column for column in row if column.startswith("zoo"))
        compare(row[zoo_column], result[PMT_METRICS[row["metric"]]], row["metric"], mismatches)
    assert not mismatches, mismatches


def pmt_variant(row: dict[str, str]) -> str:
    """The protocol's variant name from a row's schedule and MS cells ("fixed 0.942 / 0.960", "no" -> "fixed_no_ms")."""
    schedule = row["schedule"].split()[0]
    assert schedule in PMT_SCHEDULES and row["MS"] in ("yes", "no"), f"row {row['variant']!r}: no variant in the file"
    return PMT_SCHEDULES[schedule] + ("_no_ms" if row["MS"] == "no" else "")


def check_pmt_ablation(file: str, anchor: str, columns: dict[str, tuple[str, ...]], per_round: str) -> list[str]:
    """Each row's ``columns`` (column -> the `summary` keys of its " / "-separated medians) and its per-round
    column (the `rows`' ``per_round`` key, in round order) against ``file``."""
    result = json.loads((PMT / "results" / file).read_text())
    mismatches = []
    for row in table_under(PMT / "README.md", anchor):
        variant = pmt_variant(row)
        (summary,) = [s for s in result["summary"] if s["variant"] == variant]
        for column, keys in columns.items():
            printed = numbers_in(row[column])
            assert len(printed) == len(keys), f"{row['variant']}, {column}: expected {len(keys)} numbers"
            for number, key in zip(printed, keys):
                compare(number, summary[key], f"{file} {row['variant']}, {column} ({key})", mismatches)
        rounds = sorted((r for r in result["rows"] if r["variant"] == variant), key=lambda r: r["round"])
        per_round_column = next(column for column in row if column.startswith("per-round"))
        printed = numbers_in(row[per_round_column])
        assert len(printed) == len(rounds), f"{file} {row['variant']}: {len(printed)} rounds printed, {len(rounds)} run"
        for number, r in zip(printed, rounds):
            compare(number, r[per_round], f"{file} {row['variant']}, round {r['round']} ({per_round})", mismatches)
    return mismatches


def test_pmt_iqa_ablation_table_matches_its_file():
    """PMT-IQA card, the "Ablation" table (validation-selected): median SRCC, PLCC, last-epoch SRCC and best-test-epoch
    SRCC (`summary`) and the per-round SRCC (`rows`' `selected_srcc`) against
    `results/ablation_biq2021_frozen.json`."""
    mismatches = check_pmt_ablation(
        "ablation_biq2021_frozen.json", "| SRCC, best test epoch (the authors' selection) | per-round SRCC |",
        {"SRCC": ("selected_srcc",), "PLCC": ("selected_plcc",), "SRCC, last epoch": ("last_srcc",),
         "SRCC, best test epoch (the authors' selection)": ("best_test_srcc",)}, "selected_srcc")
    assert not mismatches, mismatches


def test_pmt_iqa_ablation_on_the_authors_split_matches_its_file():
    """PMT-IQA card, "The same ablation on the authors' split" (`--val-fraction 0`): median SRCC / PLCC at the best
    test epoch, last-epoch SRCC (`summary`) and the per-round SRCC (`rows`' `best_test_srcc`) against
    `results/ablation_biq2021_frozen_valfrac0.json`."""
    mismatches = check_pmt_ablation(
        "ablation_biq2021_frozen_valfrac0.json", "| per-round SRCC, best test epoch |",
        {"SRCC / PLCC, best test epoch (the authors' selection)": ("best_test_srcc", "best_test_plcc"),
         "SRCC, last epoch": ("last_srcc",)}, "best_test_srcc")
    assert not mismatches, mismatches


def tinymim_top1(name: str, row: str) -> float:
    """Top-1 in % of `results/{name}.classification.json`."""
    return 100 * load(TINYMIM / "results" / f"{name}.classification.json", row)["top1"]


def tinymim_seed_files() -> dict[str, str]:
    """Row id ("—", "(a)", ...) -> the seed-0 file stem the 1-epoch seed table names in its last column."""
    rows = table_under(TINYMIM / "README.md", "zoo, mean ± std over 3 seeds")
    return {row["row"]: next(c for c in row.values() if c.endswith(".classification.json`")).strip("`").removesuffix(
        ".classification.json") for row in rows}


def test_tinymim_seed_table_matches_its_classification_files():
    """TinyMIM card, the 1-epoch table ("zoo, mean ± std over 3 seeds"): seed 0, seeds 1 and 2, and their mean ± sample
    standard deviation (n - 1) against the row's named `results/{name}.classification.json` and its `.seed1`,
    `.seed2` files (`top1`)."""
    mismatches = []
    names = tinymim_seed_files()
    for row in table_under(TINYMIM / "README.md", "zoo, mean ± std over 3 seeds"):
        name = names[row["row"]]
        top1 = [tinymim_top1(name + seed, row["row"]) for seed in ("", ".seed1", ".seed2")]
        where = f"{row['row']} ({name})"
        compare(numbers_in(row["zoo, CIFAR-10 JPEG test top-1, seed 0"])[0], top1[0], f"{where} seed 0", mismatches)
        for seed, printed in zip((1, 2), numbers_in(row["seeds 1, 2"]), strict=True):
            compare(printed, top1[seed], f"{where} seed {seed}", mismatches)
        mean, std = mean_and_std(row["zoo, mean ± std over 3 seeds"])
        compare(mean, statistics.mean(top1), f"{where} mean", mismatches)
        compare(std, statistics.stdev(top1), f"{where} sample std", mismatches)
    assert not mismatches, mismatches


def test_tinymim_seeded_sampling_table_matches_its_classification_files():
    """TinyMIM card, the table "seed 0, one generator | seed 0, seeded sampling": both seed-0 top-1 values, their
    change and the range over seeds 0-2 against the row's `results/{name}.classification.json`, `.seeded`,
    `.seed1` and `.seed2` files; the name comes from the 1-epoch table's row of the same id."""
    mismatches = []
    names = tinymim_seed_files()
    for row in table_under(TINYMIM / "README.md", "| seed 0, seeded sampling |"):
        row_id = row["row"].split()[0]
        assert row_id in names, f"row {row['row']!r}: not a row of the 1-epoch table, so no result file"
        top1 = [tinymim_top1(names[row_id] + seed, row["row"]) for seed in ("", ".seed1", ".seed2")]
        seeded = tinymim_top1(names[row_id] + ".seeded", row["row"])
        where = f"{row['row']} ({names[row_id]})"
        compare(numbers_in(row["seed 0, one generator"])[0], top1[0], f"{where} one generator", mismatches)
        compare(numbers_in(row["seed 0, seeded sampling"])[0], seeded, f"{where} seeded", mismatches)
        compare(row["change"], seeded - top1[0], f"{where} change", mismatches)
        low, high = (part.strip() for part in row["seeds 0-2 range"].split("-"))
        compare(low, min(top1), f"{where} lowest seed", mismatches)
        compare(high, max(top1), f"{where} highest seed", mismatches)
    assert not mismatches, mismatches


def test_tinymim_longer_recipe_table_matches_its_classification_files():
    """TinyMIM card, the 5-epoch table ("mean of the 1-epoch table above"): seeds 0-2 and their mean ± sample std
    against `results/cifar10_long_ft_{name}.classification.json` and `.seed1`, `.seed2` (the "—" row: the 1-epoch
    files, as it says; the "1 epoch of distillation" row: `..._1epoch`), and the last column against the 1-epoch
    table's files (the mean, or seed 0 where it says so)."""
    mismatches = []
    names = tinymim_seed_files()
    for row in table_under(TINYMIM / "README.md", "| mean of the 1-epoch table above |"):
        row_id = row["row"]
        assert row_id in names, f"row {row_id!r}: not a row of the 1-epoch table, so no result file"
        short = [tinymim_top1(names[row_id] + seed, row_id) for seed in ("", ".seed1", ".seed2")]
        name = names[row_id] if row_id == "—" else names[row_id].replace("cifar10_ft_", "cifar10_long_ft_")
        if "1 epoch of distillation" in row["pre-training of the student (5 epochs, 15-epoch teacher)"]:
            name += "_1epoch"
        where = f"{row_id} ({name})"
        top1 = []
        for seed, suffix in enumerate(("", ".seed1", ".seed2")):
            if row[f"seed {seed}"] != "-":
                top1.append(tinymim_top1(name + suffix, where))
                compare(numbers_in(row[f"seed {seed}"])[0], top1[-1], f"{where} seed {seed}", mismatches)
        if row["mean ± std"] != "-":
            mean, std = mean_and_std(row["mean ± std"])
            compare(mean, statistics.mean(top1), f"{where} mean", mismatches)
            compare(std, statistics.stdev(top1), f"{where} sample std", mismatches)
        short_cell = row["mean of the 1-epoch table above"]
        short_value = short[0] if "seed 0" in short_cell else statistics.mean(short)
        compare(numbers_in(short_cell)[0], short_value, f"{where} 1-epoch table's value", mismatches)
    assert not mismatches, mismatches


DRUMS_COLUMNS = {"mean stability": ("mean_stability", 1), "centre gap": ("centre_gap", 1),
                 "within-cluster dev": ("within_dev", 1), "copied bars": ("copied_bar_fraction", 100),
                 "malformed lines": ("malformed_line_fraction", 100), "ended with `END`": ("finished_fraction", 100)}


def drums_results(system: str) -> tuple[list[dict], str]:
    """The metric blocks behind a row of the drums table, from its own label: a zoo model's `.test.seed{0,1,2}`
    files (one seed where the row says so), the first-epoch adapter's file, or the human / random / repeat blocks
    (the zoo's computation) and the GPT-3 blocks of `authors_release.json`."""
    results = DRUMS / "results"
    key = re.search(r"`(drums_\w+\.\w+)`", system)
    seeds = (0,) if "seed 0" in system else (0, 1, 2)
    if key:
        return [load(results / f"{key[1]}.test.seed{s}.json", system) for s in seeds], key[1]
    if system.startswith("zoo: the adapter after its first epoch"):
        return [load(results / "drums_smollm2_135m.lora_epoch1.test.seed0.json", system)], "lora_epoch1"
    if system.startswith("zoo: SmolLM2 from scratch") and seeds == (0,):
        return [load(results / "drums_smollm2_scratch.groove.test.seed0.json", system)], "scratch seed 0"
    for block in ("davinci", "ada"):
        if f"GPT-3 {block}" in system:
            return [load(results / "authors_release.json", system)[block]], f"authors_release {block}"
    baseline = system.split()[0]
    assert baseline in ("human", "random", "repeat"), f"row {system!r}: no result file"
    seed0 = load(results / "drums_smollm2_135m.groove_lora.test.seed0.json", system)
    block = dict(seed0[baseline], copied_bar_fraction=seed0["human_copied_bar_fraction"]) if baseline == "human" \
        else seed0[baseline]
    return [block], baseline


def test_drums_results_table_matches_its_test_files():
    """drums card, the "All 37 test prompts" table ("| system | mean stability | ..."): every zoo number against the
    row's files: the two published models' mean ± sample std (n - 1) over `results/{key}.test.seed{0,1,2}.json`
    (`generated` metrics and the fractions), single-seed rows against their file, human / random / repeat against
    the zoo's blocks of the seed-0 file, and the GPT-3 rows against `results/authors_release.json`. Values in
    parentheses are the fact sheet's and are not read; a cell the file has no key for ("-", human's 0 and 100 %)
    is not read."""
    mismatches = []
    for row in table_under(DRUMS / "README.md", "| system | mean stability |"):
        results, name = drums_results(row["system"])
        metrics = [r.get("generated", r) | {k: v for k, v in r.items() if k.endswith("fraction")} for r in results]
        for column, (key, scale) in DRUMS_COLUMNS.items():
            if key not in metrics[0]:
                continue
            mean, std = mean_and_std(row[column].split("(")[0])
            values = [scale * m[key] for m in metrics]
            compare(mean, statistics.mean(values), f"{name}, {column}", mismatches)
            if std is not None:
                compare(std, statistics.stdev(values), f"{name}, {column} sample std", mismatches)
    assert not mismatches, mismatches


# the summary table's model labels -> the run names of their `results/{run}[_nolidar|_nocamera].synthetic_val...`
CMT_RUNS = {
    "LiDAR only (CMT-L), `cmt_tiny`": "cmt_tiny_lidar_8000steps",
    "camera only (CMT-C), `cmt_tiny`, random image backbone": "cmt_tiny_camera_8000steps",
    "camera only (CMT-C), `cmt_tiny_lite0`, ImageNet image backbone": "cmt_tiny_lite0_camera_8000steps",
    "fusion, no masking, `cmt_tiny`": "cmt_tiny_fusion_nomask_8000steps",
    "fusion, masked-modal training, `cmt_tiny`": "cmt_tiny_fusion_8000steps",
    "fusion, masked-modal training, `cmt_tiny_lite0`": "cmt_tiny_lite0_fusion_8000steps",
    "fusion, masked-modal training, `bev_skip_empty`, `cmt_tiny`": "cmt_tiny_fusion_bevskip_8000steps",
    "fusion, only the cameras masked (25 %), `cmt_tiny`": "cmt_tiny_fusion_cameramask_8000steps",
    "fusion, no masking, then 2 000 masked steps (10 000 in all)":
        "cmt_tiny_fusion_nomask_8000steps_masked_finetune_2000steps",
    "fusion, 2 000 steps without masking, then 6 000 masked": "cmt_tiny_fusion_curriculum_8000steps",
    "LiDAR only (CMT-L), `cmt_tiny`, **GT-paste (points) + CBGS**, the authors' CMT-L training set":
        "cmt_tiny_lidar_gtpaste_cbgs_8000steps",
    "camera only (CMT-C), `cmt_tiny`, **GT-paste + CBGS**": "cmt_tiny_camera_gtpaste_cbgs_8000steps",
    "camera only (CMT-C), `cmt_tiny`, **CBGS and the CMT-C augmentation**, as the authors' CMT-C":
        "cmt_tiny_camera_cmtc_aug_cbgs_8000steps",
    "fusion, no masking, **GT-paste + CBGS**, `cmt_tiny`": "cmt_tiny_fusion_nomask_gtpaste_cbgs_8000steps",
    "fusion, masked-modal training, **GT-paste + CBGS**, `cmt_tiny`": "cmt_tiny_fusion_gtpaste_cbgs_8000steps",
}
CMT_COLUMNS = {"both sensors": "", "LiDAR dropped": "_nolidar", "cameras dropped": "_nocamera"}


def test_cmt_summary_table_matches_its_det3d_files():
    """CMT card, the 8 000-step summary table ("| model | both sensors | LiDAR dropped | cameras dropped |"): NDS / mAP
    of each model and column against `results/{run}{,_nolidar,_nocamera}.synthetic_val.det3d.json`; "the same,
    seed N" rows are the row above's run with `_seedN`. A "-" cell is a run not made."""
    mismatches = []
    run = None
    for row in table_under(CMT / "README.md", "| model | both sensors | LiDAR dropped | cameras dropped |"):
        seed = re.fullmatch(r"the same, seed (\d)", row["model"])
        if not seed:
            assert row["model"] in CMT_RUNS, f"row {row['model']!r}: no result file known for it"
            run = CMT_RUNS[row["model"]]
        for column, suffix in CMT_COLUMNS.items():
            if row[column] == "-":
                continue
            name = f"{run}{f'_seed{seed[1]}' if seed else ''}{suffix}.synthetic_val.det3d.json"
            result = load(CMT / "results" / name, row["model"])
            nds, mean_ap = numbers_in(row[column])
            compare(nds, 100 * result["NDS"], f"{row['model']}, {column} NDS ({name})", mismatches)
            compare(mean_ap, 100 * result["mAP"], f"{row['model']}, {column} mAP ({name})", mismatches)
    assert not mismatches, mismatches


# the head-initialisation table's recipes -> the runs of its two columns (declared init, the authors' effective one)
CMT_HEAD_INIT_RUNS = {
    "LiDAR only (CMT-L)": ("cmt_tiny_lidar_8000steps", "cmt_tiny_lidar_pytorchinit_8000steps"),
    "LiDAR only, GT-paste (points) + CBGS, the authors' CMT-L training set":
        ("cmt_tiny_lidar_gtpaste_cbgs_8000steps", "cmt_tiny_lidar_pytorchinit_gtpaste_cbgs_8000steps"),
    "fusion, no masking": ("cmt_tiny_fusion_nomask_8000steps", "cmt_tiny_fusion_nomask_pytorchinit_8000steps"),
    "camera only (CMT-C)": ("cmt_tiny_camera_8000steps", "cmt_tiny_camera_pytorchinit_8000steps"),
    "fusion, masked-modal training": ("cmt_tiny_fusion_8000steps", "cmt_tiny_fusion_pytorchinit_5982steps"),
    "fusion, masked-modal training, `cmt_tiny_lite0` (ImageNet image backbone)":
        ("cmt_tiny_lite0_fusion_8000steps", "cmt_tiny_lite0_fusion_pytorchinit_8000steps"),
}
CMT_PAIR = re.compile(r"(?:(LiDAR dropped|cameras dropped) )?(\d+\.\d+) / (\d+\.\d+)")


def check_cmt_nds_map(nds: str, mean_ap: str, name: str, where: str, mismatches: list[str]) -> None:
    """A printed NDS / mAP pair against `results/{name}.synthetic_val.det3d.json` (fractions, printed in %)."""
    result = load(CMT / "results" / f"{name}.synthetic_val.det3d.json", where)
    compare(nds, 100 * result["NDS"], f"{where} NDS ({name})", mismatches)
    compare(mean_ap, 100 * result["mAP"], f"{where} mAP ({name})", mismatches)


def test_cmt_head_init_table_matches_its_det3d_files():
    """CMT card, the head-initialisation table ("| declared init (table below) |"): every NDS / mAP pair of both
    columns against `results/{run}{,_nolidar,_nocamera}.synthetic_val.det3d.json` of the recipe's run (the pair's
    "LiDAR dropped" / "cameras dropped" label picks the file), "published in fp16 as `name`" pairs against
    `results/{name}.synthetic_val.det3d.json`, and "seeds 1, 2" NDS against the run's `_seed1`, `_seed2` files.
    The validation NDS during training ("val NDS 26.3 at epoch 3 against 4.7") is not read: the declared-init run's
    metrics are not committed."""
    suffixes = {None: "", "LiDAR dropped": "_nolidar", "cameras dropped": "_nocamera"}
    mismatches = []
    for row in table_under(CMT / "README.md", "| declared init (table below) |"):
        recipe = row["recipe, 8 000 steps"]
        assert recipe in CMT_HEAD_INIT_RUNS, f"row {recipe!r}: no result files known for it"
        for column, run in zip(list(row)[1:], CMT_HEAD_INIT_RUNS[recipe], strict=True):
            cell = row[column].replace("*", "")
            published = re.search(r"published in fp16 as `([^`]+)`: (\S+) / ([\d.]+)", cell)
            if published:
                check_cmt_nds_map(published[2], published[3], published[1], f"{recipe}, published", mismatches)
                cell = cell.replace(published[0], "")
            seeds = re.search(r"seeds 1, 2: (\S+), (\S+) NDS", cell)
            if seeds:
                for seed, printed in zip((1, 2), seeds.groups()):
                    result = load(CMT / "results" / f"{run}_seed{seed}.synthetic_val.det3d.json", recipe)
                    compare(printed, 100 * result["NDS"], f"{recipe}, seed {seed} NDS", mismatches)
            pairs = CMT_PAIR.findall(cell)
            assert pairs and pairs[0][0] == "", f"{recipe}, {column}: no NDS / mAP with both sensors"
            for dropped, nds, mean_ap in pairs:
                check_cmt_nds_map(nds, mean_ap, run + suffixes[dropped or None], f"{recipe}, {column}, "
                                  f"{dropped or 'both sensors'}", mismatches)
    assert not mismatches, mismatches
