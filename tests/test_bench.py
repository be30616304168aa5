import json

import pytest
import torch

import zoo
from zoo.bench.harness import benchmark, count_flops, load_bench_model, with_backoff
from zoo.bench.peaks import table_peak
from zoo.bench.report import tf32_note
from zoo.bench.suite import expand, load_suite, merge_results, run_suite
from zoo.cli import main
from zoo.errors import ZooError

FIELDS = {"model", "mode", "device", "precision", "batch_size", "samples_per_s", "latency_ms", "peak_mem_mb",
          "params", "flops_per_sample", "tflops", "mfu", "peak_source", "env"}


@pytest.mark.parametrize("mode", ["infer", "train"])
def test_bench_fields_and_ordering(mode, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["bench", "knn_ood_resnet20", "--mode", mode, "--device", "cpu", "--batch-size", "2",
                 "--iters", "3", "--warmup", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert FIELDS <= set(r)
    lat = r["latency_ms"]
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert r["samples_per_s"] > 0 and 0 < r["mfu"] < 1.5 and r["peak_source"].startswith("measured")
    assert {"device_name", "torch", "cuda", "zoo", "git_commit", "driver"} <= set(r["env"])
    check_rates(r, iters=3)


def check_rates(r: dict, iters: int) -> None:
    """A result's rates follow from its batch, its median step time and its FLOPs, over the ``iters`` steps asked."""
    step_s = r["latency_ms"]["p50"] / 1e3
    assert r["latency_ms"]["iters"] == r["iters"] == iters  # the steps timed, not only the argument echoed
    assert r["samples_per_s"] == pytest.approx(r["batch_size"] / step_s)
    assert r["tflops"] == pytest.approx(r["flops_per_sample"] * r["batch_size"] / step_s / 1e12)
    assert r["mfu"] == pytest.approx(r["tflops"] / r["peak_tflops"])


def _conv(cin, cout, hw, k=3):
    return 2 * cin * cout * k * k * hw * hw


def resnet20_flops() -> int:
    """Hand-derived: every 3x3 conv of the 3 stages (16/32/64 channels at 32/16/8 px) plus the linear head."""
    f = _conv(3, 16, 32)
    f += 6 * _conv(16, 16, 32)
    f += _conv(16, 32, 16) + 5 * _conv(32, 32, 16)
    f += _conv(32, 64, 8) + 5 * _conv(64, 64, 8)
    return f + 2 * 64 * 10


def resnet18_cifar_flops() -> int:
    """Hand-derived: stem, four stages of two blocks (64..512 channels at 32..4 px), 1x1 projections, head."""
    f = _conv(3, 64, 32) + 4 * _conv(64, 64, 32)
    for cin, cout, hw in ((64, 128, 16), (128, 256, 8), (256, 512, 4)):
        f += _conv(cin, cout, hw) + 3 * _conv(cout, cout, hw) + _conv(cin, cout, hw, k=1)
    return f + 2 * 512 * 10


@pytest.mark.parametrize("name, formula", [("knn_ood_resnet20", resnet20_flops),
                                           ("knn_ood_resnet18", resnet18_cifar_flops)])
def test_flop_count_matches_hand_formula(name, formula):
    r = benchmark(name, mode="infer", batch_size=2, warmup=1, iters=1)
    assert r["flops_per_sample"] == formula()
    t = benchmark(name, mode="train", batch_size=2, warmup=1, iters=1)
    # backward of a conv/linear costs two forward passes (input and weight gradients), but the first conv
    # needs no input gradient: train = 3 x forward - that one input gradient
    assert t["flops_per_sample"] == 3 * formula() - _conv(3, 64 if name.endswith("18") else 16, 32)


def test_backoff_halves_on_oom_and_reports():
    calls = []

    def run(bs):
        calls.append(bs)
        if bs > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return "ok"

    assert with_backoff(run, 32) == ("ok", 4, [32, 16, 8])
    assert calls == [32, 16, 8, 4]


def test_backoff_reraises_other_errors_and_gives_up_at_one():
    def broken(bs):
        raise ValueError("bug")

    with pytest.raises(ValueError):
        with_backoff(broken, 8)

    def always_oom(bs):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(ZooError, match="even at batch size 1"):
        with_backoff(always_oom, 4)


def test_a_model_passed_in_is_benchmarked_as_a_copy_and_left_as_it_was():
    """A train step on random data must not move the caller's weights or BatchNorm statistics, nor leave the model
    in train mode or channels-last layout."""
    m = zoo.create_model("knn_ood_resnet20").eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    r = benchmark(model=m, mode="train", batch_size=4, warmup=1, iters=2, channels_last=True)
    assert r["channels_last"] and r["params"] == sum(p.numel() for p in m.parameters())
    after = m.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    assert not m.training and not any(mod.training for mod in m.modules())
    assert all(p.is_contiguous() for p in m.parameters())  # channels-last conv weights are not contiguous


def test_a_saved_model_folder_is_benchmarked_from_a_path(tmp_path):
    folder = zoo.save_pretrained(zoo.create_model("knn_ood_resnet20"), tmp_path / "m")
    r = benchmark(folder, batch_size=2, warmup=1, iters=1)
    assert r["model"] == str(folder)


@pytest.fixture
def no_model_loaded(monkeypatch):
    """Makes `benchmark` fail the test if it loads a model (its arguments are to be refused before any work)."""
    def load(*_args, **_kwargs):
        raise AssertionError("benchmark loaded a model before it refused its arguments")

    monkeypatch.setattr("zoo.bench.harness.load_bench_model", load)


@pytest.mark.parametrize("flag, value", [("compile", "no"), ("channels_last", "no"), ("channels_last", 1),
                                         ("compile", None)])
def test_a_flag_that_is_not_a_bool_is_refused_not_recorded(flag, value, no_model_loaded):
    """``compile="no"`` used to compile (a truthy string) and record "no"."""
    with pytest.raises(ZooError, match=rf"^{flag} must be True or False, not {value!r}$"):
        benchmark("knn_ood_resnet20", **{flag: value})


@pytest.mark.parametrize("arg, value", [("batch_size", 0), ("batch_size", -4), ("batch_size", "8"),
                                        ("batch_size", 2.5), ("batch_size", True), ("iters", "2"), ("iters", 0),
                                        ("warmup", 0), ("warmup", 1.0)])
def test_a_bad_count_is_one_error_naming_it_and_its_range(arg, value, no_model_loaded):
    """``batch_size=0`` used to claim "out of memory even at batch size 1 (tried [])"; ``"8"`` and ``2.5`` raised a
    TypeError from deep inside."""
    with pytest.raises(ZooError) as err:
        benchmark("knn_ood_resnet20", **{arg: value})
    why = " (the first step, which compiles and backs off out of memory, is always an untimed warm-up)"
    assert str(err.value) == f"{arg} must be a whole number >= 1{why if arg == 'warmup' else ''}, not {value!r}"


@pytest.mark.parametrize("kwargs, error", [
    ({}, "as model=; got neither$"),
    ({"source": torch.nn.Linear(2, 2)}, r"got source=Linear \(pass a model object as model=\)$"),
    ({"model": torch.nn.Linear(2, 2)}, "^model= must be a zoo model, made by zoo.create_model or zoo.from_pretrained "
                                       r"\(.*\); got a Linear without zoo_cfg$")])
def test_a_benchmark_without_a_zoo_model_says_what_to_pass(kwargs, error, no_model_loaded):
    with pytest.raises(ZooError, match=error):
        benchmark(**kwargs)


def test_peak_table_matches_device_names():
    assert table_peak("NVIDIA H100 80GB HBM3", "bf16")[0] == 989.5
    assert table_peak("NVIDIA H100 PCIe", "bf16")[0] == 756.5
    assert table_peak("NVIDIA H200", "tf32")[0] == 494.5
    assert table_peak("NVIDIA A100-SXM4-80GB", "fp32")[0] == 19.5
    assert table_peak("NVIDIA L40S", "fp16")[0] == 362.05
    assert table_peak("NVIDIA GeForce RTX 4090", "bf16") is None


def test_suite_runs_and_writes_named_results(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: t\nruns:\n  - {model: knn_ood_resnet20, modes: [infer], precisions: ['32', "
                     "bf16-mixed], batch_sizes: [2], iters: 2, warmup: 1}\n")
    assert len(expand(load_suite(suite), "cpu")) == 2
    path = run_suite(suite, device="cpu", out=tmp_path / "out.json")
    data = json.loads(path.read_text())
    assert [r["precision"] for r in data["results"]] == ["32", "bf16-mixed"]
    assert data["env"]["device_name"]


def test_a_suite_key_the_loader_does_not_know_is_refused_before_any_job(tmp_path):
    """A misspelt key (``mode`` for ``modes``) would benchmark the defaults (infer, fp32, batch 32) silently."""
    suite, out = tmp_path / "s.yaml", tmp_path / "out.json"
    suite.write_text("name: t\nruns:\n  - {model: doorping_convnet, modes: [infer]}\n  - {model: knn_ood_resnet20, "
                     "mode: train, batch_size: 4, channels_last: true, iters: 2, warmup: 1}\n")
    with pytest.raises(ZooError, match=r"run 1 \(knn_ood_resnet20\): unknown keys 'mode' \(did you mean 'modes'\?\), "
                       r"'batch_size' \(did you mean 'batch_sizes'\?\), 'channels_last'; the valid keys are model, "
                       r"modes, precisions, batch_sizes, compile, model_args, warmup, iters"):
        run_suite(suite, device="cpu", out=out)
    suite.write_text("name: t\niter: 2\nruns:\n  - {model: doorping_convnet}\n")
    with pytest.raises(ZooError, match=r"unknown key 'iter' \(did you mean 'iters'\?\); the valid keys are name, "):
        run_suite(suite, device="cpu", out=out)
    assert not out.exists()


@pytest.mark.parametrize("lists, error", [("modes: []", r"modes must be a non-empty list \(of infer, train, "),
                                          ("batch_sizes: 4", "batch_sizes must be a non-empty list"),
                                          ("precisions: [fp16]", "precisions has 'fp16'; choose from 32, "),
                                          ("iters: abc", "iters must be a whole number >= 1, not 'abc'"),
                                          ("warmup: 0", "warmup must be a whole number >= 1, not 0"),
                                          ("compile: 'false'", "compile must be true or false, not 'false'"),
                                          ("model_args: [1]", r"model_args must be a mapping .*not \[1\]")])
def test_a_suite_run_that_would_expand_to_no_job_or_a_wrong_one_is_refused(lists, error, tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: t\nruns:\n  - {{model: doorping_convnet, {lists}}}\n")
    with pytest.raises(ZooError, match=error):
        load_suite(suite)


def test_fp16_on_a_cpu_runs_in_a_suite_as_alone_against_a_float16_peak(tmp_path, capsys):
    """A suite of 16-mixed rows on the CPU used to skip them all and claim a file it never wrote; `zoo bench` ran
    the same row with its MFU against a float32 matmul peak labelled fp16."""
    suite, out, alone = tmp_path / "s.yaml", tmp_path / "out.json", tmp_path / "alone.json"
    suite.write_text("name: t\nruns:\n  - {model: doorping_convnet, model_args: {width: 4}, precisions: [16-mixed], "
                     "batch_sizes: [2], iters: 1, warmup: 1}\n")
    assert main(["bench", "--suite", str(suite), "--device", "cpu", "--json", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["results"]
    assert main(["bench", "doorping_convnet", "--device", "cpu", "--precision", "16-mixed", "--batch-size", "2",
                 "--iters", "1", "--warmup", "1", "--json", str(alone)]) == 0
    for r in row, json.loads(alone.read_text()):
        assert r["precision"] == "16-mixed" and r["peak_dtype"] == "fp16"
        assert r["peak_source"].startswith("measured: best torch.matmul") and "float16" in r["peak_source"]


def test_suite_model_args_build_the_bare_name_with_them(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: t\nruns:\n  - {model: doorping_convnet, model_args: {width: 8}, batch_sizes: [2], "
                     "iters: 1, warmup: 1}\n")
    (r,) = json.loads(run_suite(suite, device="cpu", out=tmp_path / "out.json").read_text())["results"]
    assert r["model_args"] == {"width": 8}
    assert r["params"] == sum(p.numel() for p in zoo.create_model("doorping_convnet", width=8).parameters())
    with pytest.raises(ZooError, match="bare model name"):
        load_bench_model("knn_ood_resnet20.cifar10", {"num_classes": 3})


def test_command_line_warmup_and_iters_override_every_row_of_a_suite(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: t\nwarmup: 3\niters: 4\nruns:\n  - {model: doorping_convnet, batch_sizes: [2]}\n"
                     "  - {model: doorping_convnet, batch_sizes: [2], modes: [train], warmup: 2, iters: 5}\n")
    out = tmp_path / "out.json"
    assert main(["bench", "--suite", str(suite), "--device", "cpu", "--warmup=1", "--iters", "2",
                 "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["warmup"], r["iters"], r["latency_ms"]["iters"]) for r in results] == [(1, 2, 2), (1, 2, 2)]


def test_a_failing_suite_job_is_recorded_and_the_others_run(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: t\nruns:\n  - {model: doorping_convnet, model_args: {width: 0}, iters: 1, warmup: 1}\n"
                     "  - {model: doorping_convnet, model_args: {width: 4}, batch_sizes: [2], iters: 1, warmup: 1}\n")
    data = json.loads(run_suite(suite, device="cpu", out=tmp_path / "out.json").read_text())
    assert [r["model_args"] for r in data["results"]] == [{"width": 4}]
    assert data["failed"][0]["source"] == "doorping_convnet" and data["failed"][0]["error"]
    assert data["failed"][0]["model_args"] == {"width": 0}  # a failed row is told apart like a measured one
    out = tmp_path / "cli.json"  # through the CLI: the file is written and the exit status says a job failed
    assert main(["bench", "--suite", str(suite), "--device", "cpu", "--json", str(out)]) == 2
    assert json.loads(out.read_text())["failed"][0]["model_args"] == {"width": 0}
    assert capsys.readouterr().err == (f"zoo: error: 1 of the 2 jobs of {suite} failed; the others were measured, "
                                       f"and {out} lists the failed ones under 'failed' with their errors\n")
    suite.write_text("name: t\nruns:\n  - {model: doorping_convnet, model_args: {width: 0}}\n")
    with pytest.raises(ZooError, match="every job"):
        run_suite(suite, device="cpu", out=tmp_path / "out2.json")


@pytest.mark.parametrize("groups, transposed", [(1, False), (16, False), (16, True)])
def test_conv_backward_flops_respect_groups(groups, transposed):
    """Backward of a convolution = 2 forwards (input and weight gradients), grouped/depthwise ones included."""
    from torch.utils.flop_counter import FlopCounterMode

    from zoo.bench.harness import _conv_backward_flops

    conv_cls = torch.nn.ConvTranspose2d if transposed else torch.nn.Conv2d
    conv = conv_cls(16, 32, 3, stride=2, groups=groups)
    x = torch.randn(2, 16, 9, 9, requires_grad=True)
    mapping = {torch.ops.aten.convolution_backward: _conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as fwd:
        y = conv(x)
    with FlopCounterMode(display=False, custom_mapping=mapping) as bwd:
        y.sum().backward()
    assert bwd.get_total_flops() == 2 * fwd.get_total_flops() > 0


def test_attention_flops_count_grouped_query_heads():
    """QK^T and AV, 2 * b * hq * s^2 * d each, with fewer key/value heads."""
    b, hq, hkv, s, d = 2, 4, 2, 8, 16
    q, k, v = torch.randn(b, hq, s, d), torch.randn(b, hkv, s, d), torch.randn(b, hkv, s, d)
    step = lambda x: torch.nn.functional.scaled_dot_product_attention(x, k, v, enable_gqa=True)  # noqa: E731
    assert count_flops(step, q) == 2 * (2 * b * hq * s * s * d)


@pytest.mark.parametrize("kind", ["plain", "masked", "causal", "grouped"])
def test_fused_attention_is_counted_as_the_math_kernels_matmuls(kind):
    """Forward and backward through the CPU's fused kernel count what the math kernel's matmuls count (forward F,
    backward 2F), without running the math kernel; the fused kernel did run (its formula is in the counts)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from zoo.bench.harness import _FLOP_FORMULAS

    b, h, s, d = 2, 4, 32, 16
    q = torch.randn(b, h, s, d, requires_grad=True)
    k, v = (torch.randn(b, h // 2 if kind == "grouped" else h, s, d, requires_grad=True) for _ in range(2))
    mask = torch.rand(s, s) > 0.3 if kind == "masked" else None
    step = lambda _: torch.nn.functional.scaled_dot_product_attention(  # noqa: E731
        q, k, v, attn_mask=mask, is_causal=kind == "causal", enable_gqa=kind == "grouped").sum().backward()
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as math_kernel:
        step(None)
    with FlopCounterMode(display=False, custom_mapping=_FLOP_FORMULAS) as fused:
        step(None)
    flops = count_flops(step, None)
    assert flops == fused.get_total_flops() == math_kernel.get_total_flops() == 3 * 4 * b * h * s * s * d
    assert torch.ops.aten._scaled_dot_product_flash_attention_for_cpu in fused.get_flop_counts()["Global"]


def test_report_flags_gpu_fp32_rows_measured_with_tf32_convolutions():
    row = {"device": "cuda", "precision": "32"}
    assert "TF32" in tf32_note(row)
    assert tf32_note(row | {"tf32_conv": False}) == ""
    assert tf32_note({"device": "cuda", "precision": "bf16-mixed"}) == ""


def _row(model, p50, **kw):
    return {"model": model, "mode": "infer", "precision": "32", "batch_size": 8, "p50": p50} | kw


def test_merge_replaces_rows_in_place_and_keeps_each_rows_env():
    old = {"suite": "s", "command": "old", "env": {"git_commit": "old"}, "note": "kept",
           "results": [_row("a", 1), _row("b", 2), _row("b", 5, model_args={"width": 4})],
           "failed": [{"source": "c", "mode": "infer", "precision": "32", "batch_size": 8, "error": "OOM"}]}
    new = {"suite": "s", "command": "new", "env": {"git_commit": "new"},
           "results": [_row("b", 3), _row("c", 4, batch_size=4, requested_batch_size=8)],  # c backed off to 4
           "failed": [{"source": "a", "mode": "infer", "precision": "32", "batch_size": 8, "error": "bug"}]}
    merged = merge_results(old, new)
    assert [(r["model"], r["p50"], r["env"]["git_commit"]) for r in merged["results"]] == [
        ("a", 1, "old"), ("b", 3, "new"), ("b", 5, "old"), ("c", 4, "new")]
    assert merged["failed"] == new["failed"]  # c measured now; a's new failure listed beside its old row
    assert (merged["command"], merged["note"]) == ("new", "kept")


def test_report_command_takes_help_and_rewrites_only_the_marked_part(tmp_path, monkeypatch, capsys):
    from zoo.bench import report

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    readme = tmp_path / "benchmarks" / "README.md"
    readme.write_text(f"head\n{report.BEGIN}\nold\n{report.END}\ntail\n")
    monkeypatch.setattr(report, "repo_root", lambda: tmp_path)
    with pytest.raises(SystemExit) as exit_:
        report.main(["--help"])
    assert exit_.value.code == 0 and "rewrites the part of the README" in capsys.readouterr().out
    assert "old" in readme.read_text()
    with pytest.raises(SystemExit):
        report.main(["--bogus"])
    report.main([])
    assert readme.read_text() == f"head\n{report.BEGIN}\n_No results committed yet._\n{report.END}\ntail\n"


def test_the_recorded_commit_is_the_one_the_process_started_with():
    """A commit made while a long benchmark runs must not be written into its result as the code that ran: the
    commit is read when zoo.bench.env is imported (a benchmark's start), and not again."""
    import os
    import subprocess
    import sys

    code = ("import subprocess, zoo.bench.env as env, torch; read = env._git_commit.cache_info().currsize; "
            "subprocess.run = None; "
            "print(read, env.environment(torch.device('cpu'))['git_commit'] == env._git_commit())")
    environ = {k: v for k, v in os.environ.items() if k != "ZOO_GIT_COMMIT"}  # read from git, not the variable
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120)
    assert out.stdout.split() == ["1", "True"], out.stderr


def test_cpu_peak_memory_is_the_timed_steps_not_the_process_history():
    from zoo.bench.harness import _cpu_peak_mb, _reset_cpu_peak

    if not _reset_cpu_peak():
        pytest.skip("this kernel does not let a process reset its peak resident set (/proc/self/clear_refs)")
    big = torch.ones(3 * 2**28)  # 3 GiB, touched, then freed: the process's peak before the benchmark
    del big
    before = _cpu_peak_mb()
    r = benchmark("knn_ood_resnet20", mode="infer", batch_size=2, warmup=1, iters=2)
    assert before > 3072 and r["peak_mem_mb"] < before - 2048, (before, r["peak_mem_mb"])
    assert r["peak_mem_kind"].startswith("process peak RSS over the timed steps")


def test_result_files_are_named_by_the_device_type_not_by_nvidia_smi():
    from zoo.bench.env import device_slug
    from zoo.bench.suite import results_path

    gpu = {"device_type": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "driver": None, "torch": "2.11.0+cu130",
           "cuda": "13.0"}
    assert device_slug(gpu) == "h100-80gb-hbm3"
    assert results_path({"name": "s"}, gpu).name == "s__h100-80gb-hbm3__torch2.11.0__cu13.0.json"
    cpu = {**gpu, "device_type": "cpu", "device_name": "AMD EPYC 7B13"}
    assert results_path({"name": "s"}, cpu).name == "s__cpu-amd-epyc-7b13__torch2.11.0.json"
    old_gpu_block = {k: v for k, v in gpu.items() if k != "device_type"} | {"driver": "580.1"}
    assert device_slug(old_gpu_block) == "h100-80gb-hbm3"
