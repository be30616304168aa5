"""Drum generation throughput: the zoo's sampler vs transformers' default ``generate``, same model, same prompts,
same sampling (temperature 0.9 over the full softmax: no top-k, no top-p; the paper's settings).

Two settings per model, both timed in this process on the same left-padded test prompts:

* ``fixed``: every row generates exactly N tokens (``stop_at_end=False`` / ``min_new_tokens=N``): the per-step
  cost of the two decoding loops.
* ``stop``: rows stop at ``END`` (the paper's decoding; ``eos_token_id`` = ``END`` in transformers). The zoo drops
  finished rows from the batch and its KV cache; transformers keeps them until the longest row ends.
  Tokens/s counts the tokens each row generated up to its ``END``.

The zoo runs with each of ``--decoders`` (default: ``dynamic`` and ``static`` on a CPU, ``dynamic`` and ``graph``
on CUDA; see `zoo.models.drums.generate`), a row per decoder; ``graph`` and ``static`` keep finished rows in the
batch, as transformers does. All are called in turn (zoo, transformers, zoo, ...) so that a change in machine load
hits all alike. Before timing, every loop decodes greedily (temperature 1e-4 for the zoo, ``do_sample=False`` for
transformers) and must produce the same tokens as transformers (``agree``). A decoder that raises is not timed
again: its rows carry the exception (``error``) and no timing. The file is saved after each setting, so a run cut
off later keeps the settings done.

    python benchmarks/compare_drums.py                                   # CPU, the published models
    python benchmarks/compare_drums.py --device cuda --batch 37 --new-tokens 256 --iters 5   # GPU
    python benchmarks/compare_drums.py --device cuda --base-folder .gpu/smollm2-135m ...    # GPU, no GGUF there
"""

from __future__ import annotations

import argparse

import torch

import zoo
from zoo.bench.compare import save, timeit_alternating
from zoo.models.drums.examples import open_examples
from zoo.models.drums.generate import PAPER_TEMPERATURE, _left_pad, sample_ids


def hf_generate(model, prompts, n, stop, greedy=False, generator_seed=0):
    """transformers' ``generate`` on the same model and prompts; returns each row's new ids up to END."""
    device = next(model.parameters()).device
    ids, mask = _left_pad(prompts, model.tokenizer.pad_id, device)
    torch.manual_seed(generator_seed)
    kwargs = {"do_sample": False} if greedy else {"do_sample": True, "temperature": PAPER_TEMPERATURE, "top_k": 0,
                                                  "top_p": 1.0}
    out = model.lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=0 if stop else n,
                            eos_token_id=model.stop_ids[0] if stop else None, pad_token_id=model.tokenizer.pad_id,
                            **kwargs)[:, ids.shape[1]:].tolist()
    end = model.stop_ids[0]
    return [row[: row.index(end) + 1] if stop and end in row else row for row in out]


def zoo_generate(model, prompts, n, stop, greedy=False, generator_seed=0, decoder="auto"):
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(generator_seed)
    return sample_ids(model, prompts, temperature=1e-4 if greedy else PAPER_TEMPERATURE, max_new_tokens=n,
                      stop_at_end=stop, generator=g, decoder=decoder)


def guarded(fn, errors: dict, key: str):
    """``fn`` that returns None instead of raising, with the exception kept in ``errors[key]``, and is not called
    again after one: a decoder that fails (the graph decoder had never run on a GPU) must not lose the others' rows."""
    def call(*args, **kw):
        if key in errors:
            return None
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 -- any failure of a decoder is a result to record
            errors[key] = f"{type(e).__name__}: {e}"
            print(f"{key} failed: {errors[key]}", flush=True)
            return None
    return call


def write(rows: list[dict], decoders: list[str], device) -> tuple[dict, str]:
    """Save the rows so far (after each setting: a run cut off later keeps them); returns the summary and path."""
    summary = {d: {"min_speedup": min((r["speedup"] for r in rows if r["decoder"] == d and not r["error"]),
                                      default=None),
                   "all_agree": all(r["agree"] for r in rows if r["decoder"] == d)} for d in decoders}
    path = save("drums", {"description": "Generated tokens/s of zoo.models.drums.generate.sample_ids vs "
                                         "transformers' generate (same model, prompts, temperature 0.9, full "
                                         "softmax). fixed: exactly N tokens per row; stop: rows end at END. error: "
                                         "why a decoder has no timing.",
                          "rows": rows, "summary": summary}, device=device)
    return summary, path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["drums_smollm2_135m.groove_lora", "drums_smollm2_scratch.groove"])
    p.add_argument("--base-folder", default=None,
                   help="instead of --models: the architecture of this transformers folder (config and tokenizer "
                        "only) with random weights, e.g. SmolLM2-135M on a machine without its GGUF file")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8, help="prompts per batch (the first test prompts)")
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--decoders", default=None,
                   help="zoo decoders to time, comma list of dynamic, static, graph (default: dynamic,static on a "
                        "CPU, dynamic,graph on CUDA)")
    a = p.parse_args()
    device = torch.device(a.device)
    decoders = (a.decoders or ("dynamic,graph" if device.type == "cuda" else "dynamic,static")).split(",")
    prompts_text = [e.prompt for e in open_examples("groove_midi", "test")[: a.batch]]
    rows = []
    models = ({f"drums_lm(base={a.base_folder}, init=scratch)": lambda: zoo.create_model(
        "drums_lm", base=a.base_folder, init="scratch")} if a.base_folder else
        {name: lambda name=name: zoo.from_pretrained(name) for name in a.models})
    for name, build in models.items():
        model = build().eval().to(device)
        prompts = [model.tokenizer.encode(t) for t in prompts_text]
        with torch.inference_mode():
            greedy_hf = hf_generate(model, prompts, 16, True, greedy=True)
            errors = {}
            zoo_paths = {d: guarded(zoo_generate, errors, f"zoo_{d}") for d in decoders}
            agree = {d: zoo_paths[d](model, prompts, 16, True, greedy=True, decoder=d) == greedy_hf for d in decoders}
            for setting, stop in (("fixed", False), ("stop", True)):
                counts = {}

                def runner(fn, impl, model=model, prompts=prompts, stop=stop, counts=counts, **kw):
                    def run():  # the tokens of the last timed call are the ones counted (none: it failed)
                        ids = fn(model, prompts, a.new_tokens, stop, **kw)
                        counts[impl] = None if ids is None else sum(len(r) for r in ids)
                    return run

                paths = {f"zoo_{d}": runner(zoo_paths[d], f"zoo_{d}", decoder=d) for d in decoders}
                paths["transformers"] = runner(hf_generate, "transformers")
                timings = timeit_alternating(paths, device=device, warmup=1, iters=a.iters)
                hf_tps = counts["transformers"] / (timings["transformers"]["p50"] / 1e3)
                for d in decoders:
                    row = {"model": name, "setting": setting, "decoder": d, "batch": len(prompts),
                           "max_new_tokens": a.new_tokens, "agree": agree[d], "zoo_tokens": None,
                           "zoo_p50_ms": None, "zoo_tokens_per_s": None,
                           "transformers_tokens": counts["transformers"],
                           "transformers_p50_ms": timings["transformers"]["p50"],
                           "transformers_tokens_per_s": hf_tps, "speedup": None, "error": errors.get(f"zoo_{d}", "")}
                    if not row["error"]:
                        zoo_tps = counts[f"zoo_{d}"] / (timings[f"zoo_{d}"]["p50"] / 1e3)
                        row |= {"zoo_tokens": counts[f"zoo_{d}"], "zoo_p50_ms": timings[f"zoo_{d}"]["p50"],
                                "zoo_tokens_per_s": zoo_tps, "speedup": zoo_tps / hf_tps}
                    rows.append(row)
                    print(row, flush=True)
                summary, path = write(rows, decoders, device)
    print(summary, f"-> {path}")


if __name__ == "__main__":
    main()
