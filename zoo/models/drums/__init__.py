"""Language Models are Drummers: Drum Composition with Natural Language Pre-Training (Zhang, Callison-Burch,
AAAI 2023 workshop on Creative AI Across Modalities)."""

from zoo.registry import Paper

_M = "zoo.models.drums.lm"

PAPER = Paper(
    id="drums",
    title="Language Models are Drummers: Drum Composition with Natural Language Pre-Training",
    authors="Zhang, Callison-Burch",
    venue="AAAI 2023 Workshop on Creative AI Across Modalities",
    arxiv="2301.01162",
    code="https://github.com/zharry29/drums-with-llm",
    license="authors' code: no licence file; SmolLM2-135M-Instruct: Apache-2.0; Groove MIDI Dataset: CC BY 4.0",
    models={
        "drums_smollm2_135m": f"{_M}:drums_smollm2_135m",
        "drums_smollm2_scratch": f"{_M}:drums_smollm2_scratch",
        "drums_gpt2_tiny": f"{_M}:drums_gpt2_tiny",
        "drums_lm": f"{_M}:drums_lm",
    },
    tasks={"drums": "zoo.models.drums.drums_task:DrumsTask"},
    bench="zoo.models.drums.bench:drum_lm",
    demo="zoo.models.drums.demo:run",
    card="zoo/models/drums/README.md",
    extra="drums",
)
