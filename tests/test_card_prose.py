"""Numbers the cards derive in sentences (a bound from FLOPs and a peak, a range over two runs' ratios, a count of
rows) read back from the committed result files, or from the card's own table, they are derived from. The tables
themselves are read by `test_card_results.py` and `test_card_benchmarks.py`; these are the prose claims a new
result file or an edit leaves wrong without failing those (read-only audits on 2026-12-07 found seven such)."""

from __future__ import annotations

import json

from card_tables import BENCHMARKS, CMT, DOORPING, DRUMS, MODELS, table_under

from zoo.models.knn_ood.aupr_rules import check_reproduces

LOGS = BENCHMARKS / "logs"


def paragraph(card, anchor: str) -> str:
    """The paragraph (or list item) of ``card`` holding ``anchor``, its lines joined by spaces."""
    blocks = [" ".join(line.strip() for line in block.splitlines()) for block in card.read_text().split("\n\n")]
    hits = [b for b in blocks if anchor in b]
    assert len(hits) == 1, f"{card.name}: {len(hits)} paragraphs hold {anchor!r}, the test needs exactly one"
    return hits[0]


def per_cent_range(fractions) -> str:
    return f"{min(fractions) * 100:.0f}-{max(fractions) * 100:.0f} %"


def test_doorping_one_thread_peak_bound_follows_from_its_compare_files():
    """The DOORPING card's bound on one thread: the FLOPs of an outer iteration at the run's measured matmul peak, its
    ratio to the original's time, and the zoo parts' share of the peak, from the third and fourth rows' logs."""
    card = DOORPING / "README.md"
    runs = {"third row's run": "05d", "fourth's": "05b"}
    logs = {k: json.loads((LOGS / f"compare-doorping-cpu-2026-12-{v}.json").read_text()) for k, v in runs.items()}
    parts = next(iter(logs.values()))["summary"]["part_fraction_of_peak"]
    flops = sum(p["flops"] for p in parts.values())
    bounds = []
    for name, log in logs.items():
        seconds = flops / (log["summary"]["peak_tflops"] * 1e12)
        original = next(r for r in log["rows"] if r["path"] == "original")["seconds_per_outer_iteration"]
        bounds.append(f"{seconds:.1f} s in the {name} (original {original:.1f} s: {original / seconds:.2f}x at most)")
    text = paragraph(card, "of an outer iteration would take")
    assert f"the {flops / 1e9:,.0f}".replace(",", " ") + f" GFLOP of an outer iteration would take {bounds[0]} and " \
           f"{bounds[1]}" in text
    share = per_cent_range([p["zoo"] for log in logs.values()
                            for p in log["summary"]["part_fraction_of_peak"].values()])
    assert f"the zoo's path already runs at {share} of the measured fp32 matmul peak" in text
    assert f"the zoo's path runs at {share} of the measured fp32 matmul peak" in paragraph(card, "The GPU goal (3x")


def test_doorping_zoo_bench_sentence_matches_the_cpu_smoke_file():
    data = json.loads((BENCHMARKS / "cpu-smoke__cpu-amd-epyc__torch2.14.1.json").read_text())
    rate = {(r["model"], r["mode"]): r["samples_per_s"] for r in data["results"]}
    models = ("doorping_convnet", "doorping_convnet_in", "doorping_alexnet")
    expected = ", ".join(f"`{m}` {rate[m, 'infer']:.0f} / {rate[m, 'train']:.0f}" for m in models)
    assert f"infer / train images/s {expected}." in paragraph(DOORPING / "README.md", "infer / train images/s")


def test_drums_sampler_ratio_sentences_follow_from_the_two_runs():
    """"All sixteen ratios ... (lowest-highest)", which rows hold the smallest ones, and the tokens the `stop` rows
    generated, from the current compare file and the earlier run's log."""
    current = json.loads((BENCHMARKS / "compare_drums__cpu-amd-epyc__torch2.14.1.json").read_text())["rows"]
    earlier = json.loads((LOGS / "compare-drums-cpu-2026-12-05a.json").read_text())["rows"]
    rows = current + earlier
    ratios = [round(r["speedup"], 2) for r in rows]
    text = paragraph(DRUMS / "README.md", "All sixteen ratios of the two runs")
    assert len(rows) == 16 and f"All sixteen ratios of the two runs are above 1 ({min(ratios):.2f}-{max(ratios):.2f})" \
        in text
    small = [r for r, ratio in zip(rows, ratios) if ratio <= 1.05]
    scratch_dynamic = sum("scratch" in r["model"] and r["decoder"] == "dynamic" for r in small)
    lora_stop = sum("lora" in r["model"] and r["setting"] == "stop" for r in small)
    words = {3: "three", 4: "four"}
    assert scratch_dynamic + lora_stop == len(small)
    assert (f"the smallest ratios ({min(ratios):.2f}-1.05: {words[scratch_dynamic]} of the scratch model's four "
            f"dynamic-loop ratios, {words[lora_stop]} of the adapter's four `stop` ones)") in text

    def tokens(model: str) -> str:
        stop = [r for r in current if r["setting"] == "stop" and model in r["model"]]
        assert len({r["transformers_tokens"] for r in stop}) == 1
        zoo = " and ".join(f"{r['zoo_tokens']:,}".replace(",", " ") for r in stop)
        return f"{zoo} tokens against {stop[0]['transformers_tokens']:,}".replace(",", " ")

    assert f"({tokens('lora')} for the adapter; {tokens('scratch').replace(' tokens', '')} for the scratch model)" \
        in text


def test_cmt_seed_onset_sentence_matches_the_seed_table():
    """The sentence under the CMT card's three-seed table: the range of the unmasked runs' onsets, how far the last
    one came after the others, and its final NDS against theirs."""
    rows = [r for r in table_under(CMT / "README.md", "| run | seed | loss at epoch 40 / 50 / 60 / 80 / 100 |")
            if r["run"] == "no masking"]
    onsets = {int(r["leaves"]) for r in rows}
    last = max(rows, key=lambda r: int(r["leaves"]))
    final = {r["seed"]: float(r["val NDS at epoch 20 / 40 / 60 / 80 / 100"].split("/")[-1]) for r in rows}
    others = sorted(v for k, v in final.items() if k != last["seed"])
    words = {3: "three", 7: "seven", 10: "ten"}
    gaps = sorted(int(last["leaves"]) - o for o in onsets if o != int(last["leaves"]))
    text = paragraph(CMT / "README.md", "The unmasked runs leave the prior between epochs")
    assert f"leave the prior between epochs {min(onsets)} and {max(onsets)}" in text
    assert f"left last, {' and '.join(words[g] for g in gaps)} epochs after the others" in text
    assert f"ends at half their NDS ({final[last['seed']]:.1f} against {others[0]:.1f}-{others[-1]:.1f})" in text


def test_cmt_head_init_sentence_matches_its_table():
    """The training log's verdict on the authors' effective head init: the camera-only model's loss and val NDS
    ranges, as its table (read back from the runs' files by `test_card_cmt_training.py`) prints them."""
    log = CMT / "masked_training.md"
    rows = {r["head init"]: r for r in table_under(log, "| run | head init | loss at epoch 20 / 40 / 60 / 80 / 100 |")
            if r["run"].startswith("camera only")}
    loss = rows["PyTorch's"]["loss at epoch 20 / 40 / 60 / 80 / 100"].split(" / ")
    nds = {k: [float(v) for v in r["val NDS % at epoch 20 / 40 / 60 / 80 / 100"].split(" / ")] for k, r in rows.items()}
    pytorch, declared = nds["PyTorch's"], nds["declared"]
    text = paragraph(log, "The initialisation the authors' code really runs")
    assert (f"the camera-only model's focal loss creeps from {loss[0]} to {loss[-1]} and its NDS stays at "
            f"{min(pytorch):.1f}-{max(pytorch):.1f} % ({min(declared):.1f}-{max(declared):.1f} % with the declared "
            f"init)") in text


def test_knn_aupr_rule_sentence_follows_from_its_result_files():
    """The kNN card's comparison of the two AUPR rules: the files' step-wise areas reproduce the published runs, the
    range of the gap where the curve's first point holds over 5 % of the positives (MSP's AUPR-in with the converted
    ResNets, as the sentence says), that recall per model, and the range of every other gap."""
    results = MODELS / "knn_ood" / "results"
    models = ("knn_ood_resnet20.cifar10", "knn_ood_resnet56.cifar10", "knn_ood_resnet18.cifar10_ce")
    top_run, other, recalls, worst = [], [], [], []
    for model in models:
        rules = json.loads((results / f"{model}.aupr_rules.json").read_text())
        published = json.loads((results / f"{model}.ood.json").read_text())
        worst.append(check_reproduces(rules["rows"], published, tol=1e-3))
        assert rules["max_diff_from_results"] == worst[-1]
        for row in rules["rows"]:
            for side in ("in", "out"):
                gap = 100 * (row[f"aupr_{side}"] - row[f"aupr_{side}_trapezoid"])
                if row[f"first_recall_{side}"] > 0.05:
                    assert (row["scorer"], side) == ("msp", "in") and "resnet18" not in model, (model, row)
                    top_run.append(gap)
                    recalls.append(f"{100 * row[f'first_recall_{side}']:.2f} %")
                else:
                    other.append(abs(gap))
    text = paragraph(MODELS / "knn_ood" / "README.md", "**AUPR by the zoo's rule and by the authors'.**")
    assert f"reproduce the tables' JSON files to {max(worst):.1e}".replace("e-0", "e-") in text
    assert f"MSP's AUPR-in is {min(top_run):.2f} to {max(top_run):.2f} points lower by the authors' rule" in text
    assert f"because {' and '.join(sorted(set(recalls)))} of the ID test images score" in text
    assert f"differs by {min(other):.2f} to {max(other):.2f} points" in text
