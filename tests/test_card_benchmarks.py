"""The model cards' benchmark and comparison tables against the committed files under `benchmarks/results/`
(DOORPING's performance and parts tables, kNN-OOD's H200 table, PMT-IQA's, TinyMIM's, the drum LM's and CMT's
comparison and `zoo bench` tables) and the generated section of `benchmarks/README.md`; how tables are read and
compared: `card_tables`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from card_tables import (
    BENCHMARKS,
    CMT,
    DOORPING,
    DRUMS,
    KNN,
    PMT,
    ROOT,
    TINYMIM,
    bench_result,
    compare,
    compare_cells,
    load,
    model_of,
    number,
    numbers_in,
    table_lines,
    table_under,
)


def doorping_compare_file(device: str) -> Path:
    """The file of a row of the performance table: the `logs/...json` its device cell names, or else the GPU's or
    the CPU's `compare_doorping__*.json`."""
    named = re.search(r"`(logs/[\w.-]+\.json)`", device)
    if named:
        return BENCHMARKS / named[1]
    machine = "h200__torch2.11.0" if device.startswith("GPU") else "cpu-amd-epyc__torch2.14.1"
    return BENCHMARKS / f"compare_doorping__{machine}.json"


def test_doorping_performance_table_matches_its_compare_files():
    """DOORPING card, "Performance" ("| device | command | original s / outer it. |"): the original and zoo seconds
    per outer iteration, the speed-up, the goal and whether it is met, and the loss relative difference of each row
    against the file the row names (`benchmarks/results/logs/compare-doorping-cpu-*.json`), or where it names none
    `benchmarks/results/compare_doorping__{cpu-amd-epyc__torch2.14.1,h200__torch2.11.0}.json`; the row's command
    (an empty cell: the row above's) against the file's, less `OMP_NUM_THREADS=1`."""
    mismatches = []
    command = None
    for row in table_under(DOORPING / "README.md", "| original s / outer it. |"):
        file = doorping_compare_file(row["device"])
        where = f"{row['device']} ({file.name})"
        result = load(file, row["device"])
        command = row["command"].strip("`").removeprefix("OMP_NUM_THREADS=1 ") or command
        assert result["command"] == command, f"{where}: the file's command is {result['command']!r}"
        paths = {r["path"]: r for r in result["rows"]}
        summary = result["summary"]
        compare_cells(row, paths["original"], {"original s / outer it.": ("seconds_per_outer_iteration", 1)}, where,
                      mismatches)
        compare_cells(row, paths["zoo"], {"zoo s / outer it.": ("seconds_per_outer_iteration", 1)}, where, mismatches)
        compare_cells(row, summary, {"speedup": ("speedup", 1), "loss rel. diff.": ("loss_relative_difference", 1)},
                      where, mismatches)
        if ":" in row["goal"]:
            compare(number(row["goal"]), summary["goal"], f"{where}, goal", mismatches)
        if ("not met" in row["goal"]) == summary["meets_goal"]:
            mismatches.append(f"{where}: card {row['goal']!r}, file meets_goal {summary['meets_goal']}")
    assert not mismatches, mismatches


def test_doorping_parts_table_matches_its_compare_files():
    """DOORPING card, the `--parts` table ("| part | FLOPs | 2 threads: original s |"): each part's FLOPs, and its
    seconds and share of the peak per path, the 2-thread columns against
    `benchmarks/results/compare_doorping__cpu-amd-epyc__torch2.14.1.json` and the 1-thread ones against
    `benchmarks/results/logs/compare-doorping-cpu-2026-12-05d.json` (the performance table's first and third rows;
    `summary`'s `part_seconds` and `part_fraction_of_peak`)."""
    two = load(BENCHMARKS / "compare_doorping__cpu-amd-epyc__torch2.14.1.json", "2 threads")["summary"]
    one = load(BENCHMARKS / "logs" / "compare-doorping-cpu-2026-12-05d.json", "1 thread")["summary"]
    # the table repeats "zoo s", so its columns are read by position: (file, summary key, path)
    columns = [(two, "part_seconds", "original"), (two, "part_seconds", "zoo"),
               (two, "part_fraction_of_peak", "original"), (two, "part_fraction_of_peak", "zoo"),
               (one, "part_seconds", "original"), (one, "part_seconds", "zoo"),
               (one, "part_fraction_of_peak", "original"), (one, "part_fraction_of_peak", "zoo")]
    header, *rows = table_lines(DOORPING / "README.md", "| part | FLOPs | 2 threads: original s |")
    assert len(header) == 2 + len(columns), "the parts table has other columns"
    mismatches = []
    for part, flops, *cells in rows:
        assert part in two["part_seconds"], f"row {part!r}: no such part in the files"
        compare(number(flops), two["part_fraction_of_peak"][part]["flops"] / 1e9, f"{part}, FLOPs (G)", mismatches)
        for name, cell, (summary, key, path) in zip(header[2:], cells, columns, strict=True):
            compare(number(cell), summary[key][part][path], f"{part}, {name} ({key} {path})", mismatches)
    assert not mismatches, mismatches


def test_knn_ood_gpu_table_matches_the_gpu_session_log():
    """kNN-OOD card, the H200 table ("| N | D | original | zoo default | torch path |"): queries/s of the three
    methods, the zoo's ratio to the original and its fraction of the bound per bank size against the rows that
    `compare_knn_ood.py --device cuda` printed into `benchmarks/results/logs/gpu-session-2026-12-04a.log` (the run
    wrote no result file, as the card says)."""
    log = (BENCHMARKS / "logs" / "gpu-session-2026-12-04a.log").read_text().splitlines()
    results = {(r["N"], r["D"], r["method"]): r for line in log if line.startswith("[{'N': ")
               for r in ast.literal_eval(line)}
    mismatches = []
    for row in table_under(KNN / "README.md", "| N | D | original | zoo default | torch path |"):
        size = int(number(row["N"])), int(number(row["D"]))
        where = f"N {row['N']}, D {row['D']}"
        assert (*size, "zoo") in results, f"{where}: no such bank size in the log"
        for column, method in (("original", "original"), ("zoo default", "zoo"), ("torch path", "torch")):
            compare_cells(row, results[*size, method], {column: ("queries_per_s", 1)}, where, mismatches)
        compare_cells(row, results[*size, "zoo"], {"zoo / original": ("ratio_vs_original", 1),
                                                   "zoo, fraction of bound": ("fraction_of_bound", 1)}, where,
                      mismatches)
    assert not mismatches, mismatches


PMT_COMPARE_COLUMNS = {"images/s": ("images_per_s", 1), "speed-up": ("speedup", 1), "SRCC (64 images)": ("srcc", 1),
                       "max abs score difference": ("max_abs_score_diff", 1)}


# the compare tables' path labels -> the `path` of their rows in the result files
PMT_CPU_PATHS = {
    "authors: their test loop, one image's 4 crops per forward, fp32, NCHW, 1x1 conv then pooling, both heads":
        "authors: one image's crops per forward (their test loop), fp32, NCHW",
    "authors' forward one crop at a time (extra row: not a layout their solver runs)":
        "authors' forward, one crop per forward (not their solver's layout), fp32, NCHW",
    "zoo: `predict(chunk=1)`, one crop per forward, channels-last, fp32":
        "zoo: 1 crops per forward, channels-last, fp32",
    "zoo: one image's 4 crops per forward, channels-last, fp32": "zoo: 4 crops per forward, channels-last, fp32",
    "zoo: one crop per forward, channels-last, bf16 autocast": "zoo: 1 crops per forward, channels-last, bf16 autocast",
    "zoo: 4 crops per forward, channels-last, bf16 autocast": "zoo: 4 crops per forward, channels-last, bf16 autocast",
}
PMT_GPU_PATHS = {
    "authors' forward, one crop at a time (old baseline), fp32, NCHW": "authors: per-crop loop, fp32, NCHW",
    "zoo: 256 crops per forward, channels-last, fp32 (cuDNN's TF32 convolutions)":
        "zoo: 256 crops per forward, channels-last, fp32",
    "zoo: the same, bf16 autocast": "zoo: 256 crops per forward, channels-last, bf16 autocast",
    "zoo: the same, fp16 autocast": "zoo: 256 crops per forward, channels-last, fp16 autocast",
}


def check_pmt_compare(name: str, anchor: str, paths: dict[str, str], columns: dict[str, tuple[str, float]]) -> list:
    """The mismatches of a compare table's rows against the rows of `benchmarks/results/{name}` their labels map to."""
    results = {r["path"]: r for r in load(BENCHMARKS / name, name)["rows"]}
    mismatches = []
    for row in table_under(PMT / "README.md", anchor):
        assert row["path"] in paths, f"row {row['path']!r}: no row of {name} known for it"
        compare_cells(row, results[paths[row["path"]]], columns, f"{row['path']} ({name})", mismatches)
    return mismatches


def test_pmt_iqa_cpu_compare_table_matches_its_file():
    """PMT-IQA card, "Side by side with the authors' test loop" ("| path | images/s | speed-up | SRCC (64 images) |
    max abs score difference |"): images/s, speed-up, SRCC and the largest score difference of each path against
    its row of `benchmarks/results/compare_pmt_iqa__cpu-amd-epyc__torch2.14.1.json`."""
    mismatches = check_pmt_compare("compare_pmt_iqa__cpu-amd-epyc__torch2.14.1.json",
                                   "| SRCC (64 images) | max abs score difference |", PMT_CPU_PATHS,
                                   PMT_COMPARE_COLUMNS)
    assert not mismatches, mismatches


def test_pmt_iqa_gpu_compare_table_matches_its_file():
    """PMT-IQA card, the H200 table ("| SRCC (64 images) | SRCC difference |"): images/s, speed-up, SRCC, its
    difference and the largest score difference of each path against its row of
    `benchmarks/results/compare_pmt_iqa__h200__torch2.11.0.json`."""
    mismatches = check_pmt_compare("compare_pmt_iqa__h200__torch2.11.0.json", "| SRCC (64 images) | SRCC difference |",
                                   PMT_GPU_PATHS, PMT_COMPARE_COLUMNS | {"SRCC difference": ("srcc_diff", 1)})
    assert not mismatches, mismatches


PMT_PRECISION = BENCHMARKS / "compare_pmt_iqa_precision_bf16__cpu-amd-epyc__torch2.14.1.json"
PMT_STAGES = {"stem conv": "stem", "stem BN": "stem_bn", **{f"block {i}": f"blocks.{i}" for i in range(7)},
              "head conv": "conv_head", "head BN": "head_bn"}


def test_pmt_iqa_bf16_stage_error_table_matches_its_file():
    """PMT-IQA card, the per-stage bf16 error table ("| stem conv | stem BN | block 0 |"): each stage's relative
    error in % against `stages` of
    `benchmarks/results/compare_pmt_iqa_precision_bf16__cpu-amd-epyc__torch2.14.1.json`."""
    errors = {s["stage"]: s["relative_error"] for s in load(PMT_PRECISION, "stages")["stages"]}
    (row,) = table_under(PMT / "README.md", "| stem conv | stem BN | block 0 |")
    assert set(row) == set(PMT_STAGES), f"the stage table has other columns: {sorted(row)}"
    mismatches = []
    for column, stage in PMT_STAGES.items():
        compare(number(row[column]), 100 * errors[stage], f"{column} ({stage})", mismatches)
    assert not mismatches, mismatches


def test_pmt_iqa_fp32_stages_table_matches_its_file():
    """PMT-IQA card, the mixed-policy table ("| policy under bf16 autocast | `fp32_stages` |"): the FLOPs share in
    fp32, the SRCC change and the mean and largest score change of each `fp32_stages` against its row of
    `benchmarks/results/compare_pmt_iqa_precision_bf16__cpu-amd-epyc__torch2.14.1.json`."""
    results = {r["fp32_stages"]: r for r in load(PMT_PRECISION, "rows")["rows"]}
    columns = {"FLOPs in fp32": ("fp32_flop_share", 100), "SRCC change": ("srcc_change", 1),
               r"mean \|score change\|": ("mean_abs_score_change", 1),
               r"max \|score change\|": ("max_abs_score_change", 1)}
    mismatches = []
    for row in table_under(PMT / "README.md", "| policy under bf16 autocast | `fp32_stages` |"):
        stages = int(row["`fp32_stages`"])
        assert stages in results, f"row {row['policy under bf16 autocast']!r}: no row of fp32_stages {stages}"
        compare_cells(row, results[stages], columns, row["policy under bf16 autocast"], mismatches)
    assert not mismatches, mismatches


def test_pmt_iqa_zoo_bench_table_matches_the_cpu_smoke_file():
    """PMT-IQA card, the `zoo bench` table ("| mode | images/s | crops/s | p50 latency |"): images/s, crops/s, median
    latency and peak RSS of infer and train against `pmt_iqa_efficientnet_lite0.biq2021`'s rows of
    `benchmarks/results/cpu-smoke__cpu-amd-epyc__torch2.14.1.json`."""
    columns = {"images/s": ("images_per_s", 1), "crops/s": ("crops_per_s", 1), "p50 latency": ("p50_ms", 1),
               "peak RSS of the suite process so far": ("peak_mem_mb", 1)}
    mismatches = []
    for row in table_under(PMT / "README.md", "| mode | images/s | crops/s | p50 latency |"):
        result = bench_result("cpu-smoke__cpu-amd-epyc__torch2.14.1.json", "pmt_iqa_efficientnet_lite0.biq2021",
                              row["mode"])
        compare_cells(row, result, columns, row["mode"], mismatches)
    assert not mismatches, mismatches


def check_tinymim_compare(name: str, anchor: str, columns: dict[str, tuple[str, float]]) -> list[str]:
    """The mismatches of a distillation-step table's rows (the path is the first word of the "path" cell) against
    the rows of `benchmarks/results/{name}`."""
    results = {r["path"]: r for r in load(BENCHMARKS / name, name)["rows"]}
    mismatches = []
    for row in table_under(TINYMIM / "README.md", anchor):
        path = row["path"].split()[0]
        assert path in results, f"row {row['path']!r}: no row of {name} for it"
        compare_cells(row, results[path], columns, f"{path} ({name})", mismatches)
    return mismatches


def test_tinymim_cpu_compare_table_matches_its_file():
    """TinyMIM card, the CPU distillation-step table ("| loss (fp32) | MFU |"): images/s, p50 and p90 step in s,
    loss and MFU in % of the reference and the zoo against
    `benchmarks/results/compare_tinymim__cpu-amd-epyc__torch2.14.1.json`."""
    mismatches = check_tinymim_compare(
        "compare_tinymim__cpu-amd-epyc__torch2.14.1.json", "| loss (fp32) | MFU |",
        {"images/s": ("images_per_s", 1), "p50 step": ("p50_ms", 1e-3), "p90 step": ("p90_ms", 1e-3),
         "loss (fp32)": ("loss", 1), "MFU": ("mfu", 100)})
    assert not mismatches, mismatches


def test_tinymim_gpu_compare_table_matches_its_file():
    """TinyMIM card, the H200 distillation-step table ("| path | precision | batch | images/s | p50 step |"): batch,
    images/s, p50 step in ms, loss, MFU in % and peak memory in GB (1 000 MB) of the reference and the zoo against
    `benchmarks/results/compare_tinymim__h200__torch2.11.0.json`."""
    mismatches = check_tinymim_compare(
        "compare_tinymim__h200__torch2.11.0.json", "| path | precision | batch | images/s | p50 step |",
        {"batch": ("batch", 1), "images/s": ("images_per_s", 1), "p50 step": ("p50_ms", 1), "loss": ("loss", 1),
         "MFU": ("mfu", 100), "peak memory": ("peak_mem_mb", 1e-3)})
    assert not mismatches, mismatches


def test_tinymim_zoo_bench_table_matches_the_cpu_smoke_file():
    """TinyMIM card, the `zoo bench` CPU table ("| GFLOP/image (infer / train) |"): batch, infer and train images/s
    and GFLOP per image of each model against its infer and train rows of
    `benchmarks/results/cpu-smoke__cpu-amd-epyc__torch2.14.1.json`."""
    mismatches = []
    for row in table_under(TINYMIM / "README.md", "| GFLOP/image (infer / train) |"):
        model = model_of(row["model"])
        flops = numbers_in(row["GFLOP/image (infer / train)"])
        for mode, gflop in zip(("infer", "train"), flops, strict=True):
            result = bench_result("cpu-smoke__cpu-amd-epyc__torch2.14.1.json", model, mode)
            compare_cells(row, result, {"batch": ("batch_size", 1), f"{mode} images/s": ("images_per_s", 1)},
                          f"{model} {mode}", mismatches)
            compare(gflop, result["flops_per_sample"] / 1e9, f"{model} {mode}, GFLOP/image", mismatches)
    assert not mismatches, mismatches


BENCH_PRECISIONS = {"bf16 autocast": "bf16-mixed", "fp32": "32"}


def test_tinymim_gpu_zoo_bench_table_matches_the_gpu_session_file():
    """TinyMIM card, the H200 `zoo bench` table of `tinymim_vit_base` ("| mode | precision | images/s | p50 | MFU |"):
    images/s, p50 in ms, and MFU in % with its peak of each mode and precision against
    `benchmarks/results/gpu-session__h200__torch2.11.0__cu13.0.json`."""
    mismatches = []
    for row in table_under(TINYMIM / "README.md", "| mode | precision | images/s | p50 | MFU |"):
        result = bench_result("gpu-session__h200__torch2.11.0__cu13.0.json", "tinymim_vit_base", row["mode"],
                              BENCH_PRECISIONS[row["precision"]])
        where = f"{row['mode']} {row['precision']}"
        compare_cells(row, result, {"images/s": ("images_per_s", 1), "p50": ("p50_ms", 1), "MFU": ("mfu", 100)},
                      where, mismatches)
        compare(numbers_in(row["MFU"])[1], result["peak_tflops"], f"{where}, MFU's peak", mismatches)
    assert not mismatches, mismatches


def test_drums_zoo_bench_table_matches_the_cpu_smoke_file():
    """drums card, the `zoo bench` table ("| model | infer tokens/s | train tokens/s |"): tokens/s of each model in
    the three modes against its rows of `benchmarks/results/cpu-smoke__cpu-amd-epyc__torch2.14.1.json`."""
    columns = {"infer tokens/s": "infer", "train tokens/s": "train", "generate, generated tokens/s": "generate"}
    mismatches = []
    for row in table_under(DRUMS / "README.md", "| model | infer tokens/s | train tokens/s |"):
        model = model_of(row["model"])
        for column, mode in columns.items():
            result = bench_result("cpu-smoke__cpu-amd-epyc__torch2.14.1.json", model, mode)
            compare_cells(row, result, {column: ("tokens_per_s", 1)}, f"{model} {mode}", mismatches)
    assert not mismatches, mismatches


DRUMS_MODELS = {"LoRA SmolLM2-135M": "drums_smollm2_135m.groove_lora",
                "scratch (3.2 M)": "drums_smollm2_scratch.groove"}


def drums_compare_rows(name: str, row: dict[str, str], model: str) -> tuple[dict, dict]:
    """The `dynamic` and `static` rows of the `compare_drums.py` file `benchmarks/results/{name}` for ``model`` and
    the row's setting ("stop at `END`", or "N tokens per row", which must be the file's `max_new_tokens`)."""
    rows = load(BENCHMARKS / name, name)["rows"]
    setting = "stop" if row["setting"] == "stop at `END`" else "fixed"
    found = {r["decoder"]: r for r in rows if (r["model"], r["setting"]) == (model, setting)}
    assert set(found) == {"dynamic", "static"}, f"{model}, {row['setting']}: {name} has decoders {sorted(found)}"
    if setting == "fixed":
        tokens = re.fullmatch(r"([\d ]+) tokens per row", row["setting"])
        assert tokens, f"{model}: unknown setting {row['setting']!r}"
        assert int(tokens[1].replace(" ", "")) == found["dynamic"]["max_new_tokens"], f"{model}: other length"
    return found["dynamic"], found["static"]


def check_drums_sampler_table(anchor: str, name: str, model: str | None = None) -> list[str]:
    """The mismatches of a sampler table's zoo `dynamic` / `static` and transformers tokens/s and both ratios
    against `benchmarks/results/{name}` (the model from the row's "model" cell, else ``model``)."""
    mismatches = []
    for row in table_under(DRUMS / "README.md", anchor):
        key = DRUMS_MODELS[row["model"]] if model is None else model
        dynamic, static = drums_compare_rows(name, row, key)
        where = f"{key}, {row['setting']} ({name})"
        compare_cells(row, dynamic, {"zoo `dynamic`": ("zoo_tokens_per_s", 1), "ratio `dynamic`": ("speedup", 1),
                                     "transformers": ("transformers_tokens_per_s", 1)}, where, mismatches)
        compare_cells(row, static, {"zoo `static`": ("zoo_tokens_per_s", 1), "ratio `static`": ("speedup", 1)}, where,
                      mismatches)
    return mismatches


def test_drums_sampler_table_matches_its_compare_files():
    """drums card, the CPU sampler table ("| ratio `static` | earlier run |"): zoo `dynamic` / `static` and
    transformers tokens/s and both ratios per model and setting against
    `benchmarks/results/compare_drums__cpu-amd-epyc__torch2.14.1.json`, and the earlier run's two ratios against
    `benchmarks/results/logs/compare-drums-cpu-2026-12-05a.json`."""
    anchor = "| ratio `static` | earlier run |"
    mismatches = check_drums_sampler_table(anchor, "compare_drums__cpu-amd-epyc__torch2.14.1.json")
    earlier = "logs/compare-drums-cpu-2026-12-05a.json"
    for row in table_under(DRUMS / "README.md", anchor):
        model = DRUMS_MODELS[row["model"]]
        results = drums_compare_rows(earlier, row, model)
        for printed, result in zip(numbers_in(row["earlier run"]), results, strict=True):
            compare(printed, result["speedup"], f"{model}, {row['setting']}, earlier {result['decoder']}", mismatches)
    assert not mismatches, mismatches


def test_drums_static_decoder_table_matches_its_log_file():
    """drums card, the static-shapes table ("| model | setting | dynamic | static |"): the speed-up over transformers
    of both decoders per model and setting against
    `benchmarks/results/logs/compare-drums-static-cpu-2026-12-04.json`."""
    name = "logs/compare-drums-static-cpu-2026-12-04.json"
    mismatches = []
    for row in table_under(DRUMS / "README.md", "| model | setting | dynamic | static |"):
        model = DRUMS_MODELS[row["model"]]
        dynamic, static = drums_compare_rows(name, row, model)
        compare_cells(row, dynamic, {"dynamic": ("speedup", 1)}, f"{model}, {row['setting']}", mismatches)
        compare_cells(row, static, {"static": ("speedup", 1)}, f"{model}, {row['setting']}", mismatches)
    assert not mismatches, mismatches


def test_drums_evaluation_workload_table_matches_its_log_file():
    """drums card, the evaluation-workload table (the one under the line naming its file; the scratch model, as its
    command says): zoo `dynamic` / `static` and transformers tokens/s and both ratios per setting against
    `benchmarks/results/logs/compare-drums-eval-workload-cpu-2026-12-05.json`."""
    name = "logs/compare-drums-eval-workload-cpu-2026-12-05.json"
    mismatches = check_drums_sampler_table(f"`benchmarks/results/{name}`", name, "drums_smollm2_scratch.groove")
    assert not mismatches, mismatches


def test_cmt_cpu_bench_table_matches_its_file():
    """CMT card, the CPU benchmark table ("| model | mode | input per frame | frames/s |"): frames/s, p50 latency in s,
    parameters in millions and GFLOP per frame of each model and mode against
    `benchmarks/results/cmt-cpu__cpu-amd-epyc__torch2.14.1.json`."""
    columns = {"frames/s": ("frames_per_s", 1), "p50 latency": ("p50_ms", 1e-3), "params": ("params", 1e-6),
               "GFLOP / frame": ("flops_per_sample", 1e-9)}
    mismatches = []
    for row in table_under(CMT / "README.md", "| model | mode | input per frame | frames/s |"):
        model = model_of(row["model"])
        result = bench_result("cmt-cpu__cpu-amd-epyc__torch2.14.1.json", model, row["mode"])
        compare_cells(row, result, columns, f"{model} {row['mode']}", mismatches)
    assert not mismatches, mismatches


def test_cmt_gpu_fps_table_matches_its_file():
    """CMT card, the H200 table ("| frames/s fp32 (TF32 convolutions) | frames/s bf16 autocast |"): inference
    frames/s of each model in fp32 and bf16 against `benchmarks/results/cmt-gpu__h200__torch2.11.0__cu13.0.json`."""
    columns = {"frames/s fp32 (TF32 convolutions)": "32", "frames/s bf16 autocast": "bf16-mixed"}
    mismatches = []
    for row in table_under(CMT / "README.md", "| frames/s fp32 (TF32 convolutions) | frames/s bf16 autocast |"):
        model = model_of(row["model"])
        for column, precision in columns.items():
            result = bench_result("cmt-gpu__h200__torch2.11.0__cu13.0.json", model, "infer", precision)
            compare_cells(row, result, {column: ("frames_per_s", 1)}, f"{model} {precision}", mismatches)
    assert not mismatches, mismatches


def test_cmt_compare_table_matches_its_file():
    """CMT card, "Side by side with the authors' formulations" ("| part | reference | max abs difference |"): the
    largest difference, zoo and reference ms and the speed-up of each part, row by row, against
    `benchmarks/results/compare_cmt__cpu-amd-epyc__torch2.14.1.json` (a part is known by its first two words)."""
    rows = load(BENCHMARKS / "compare_cmt__cpu-amd-epyc__torch2.14.1.json", "compare_cmt")["rows"]
    columns = {"max abs difference": ("max_abs_diff", 1), "zoo ms": ("zoo_ms", 1),
               "reference ms": ("reference_ms", 1), "zoo speed-up": ("zoo_speedup", 1)}
    mismatches = []
    card_rows = table_under(CMT / "README.md", "| part | reference | max abs difference |")
    assert len(card_rows) == len(rows), f"the card has {len(card_rows)} parts, the file {len(rows)}"
    for row, result in zip(card_rows, rows):
        assert row["part"].removeprefix("the ").split()[:2] == result["part"].split()[:2], \
            f"row {row['part']!r}: the file's row here is {result['part']!r}"
        compare_cells(row, result, columns, row["part"], mismatches)
    assert not mismatches, mismatches


def test_benchmarks_readme_results_section_is_what_the_report_builds():
    """`benchmarks/README.md`, the section between its `results:begin` / `results:end` markers, equals
    `zoo.bench.report.render` of `benchmarks/results/*.json` (what `python -m zoo.bench.report` writes there)."""
    from zoo.bench.report import BEGIN, END, render

    text = (ROOT / "benchmarks" / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "benchmarks/README.md needs one pair of markers"
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert section == "\n" + render(ROOT / "benchmarks" / "results"), "run `python -m zoo.bench.report`"
