"""The static-shape decoder of the drum LMs (`zoo.models.drums.static_decode`) against transformers' own forward."""

import pytest
import torch

import zoo
from zoo.errors import ZooError
from zoo.models.drums.generate import sample_ids
from zoo.models.drums.static_decode import GraphedStep, StaticDecoder, supports_static


def _tiny_llama(vocab_size=50):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                        pad_token_id=0)).eval()


def test_prefill_and_steps_match_transformers_with_left_padding_and_gqa():
    from transformers import DynamicCache

    lm = _tiny_llama()
    ids = torch.randint(1, 50, (3, 6))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding
    mask[2, :5] = 0
    ids[mask == 0] = 0
    positions = (mask.cumsum(1) - 1).clamp_min(0)
    steps = torch.randint(1, 50, (4, 3))
    with torch.no_grad():
        cache = DynamicCache()
        ref = [lm(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                  use_cache=True).logits[:, -1]]
        m, pos = mask, positions[:, -1]
        for tok in steps:
            m, pos = torch.cat([m, torch.ones_like(m[:, :1])], 1), pos + 1
            ref.append(lm(input_ids=tok[:, None], attention_mask=m, position_ids=pos[:, None],
                          past_key_values=cache, use_cache=True).logits[:, -1])
        dec = StaticDecoder(lm, 3, 6 + len(steps) + 2)  # spare slots stay masked
        got = [dec.prefill(ids, mask)]
        for tok in steps:
            dec.token.copy_(tok)
            got.append(dec.step())
            dec.advance()
    for r, g in zip(ref, got):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(torch.stack([k for k in dec.keys])).all()  # padding queries stay finite
    assert dec.valid.sum(1).tolist() == [6 + 4, 4 + 4, 1 + 4]


def test_repeating_a_step_is_idempotent_and_capacity_is_checked():
    lm = _tiny_llama()
    dec = StaticDecoder(lm, 2, 5)
    with torch.no_grad():
        dec.prefill(torch.randint(1, 50, (2, 3)), torch.ones(2, 3, dtype=torch.long))
        dec.token.fill_(7)
        first = dec.step().clone()
        torch.testing.assert_close(dec.step(), first)  # what CUDA-graph warm-up relies on
    dec.advance()
    with pytest.raises(ZooError, match="holds 5 slots"):
        dec.advance()
    with pytest.raises(ZooError, match="leaves no room"):
        dec.prefill(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long))


@pytest.fixture
def llama_drum_lm(tmp_path):
    """A DrumLM on a 2-block Llama (GQA) over the symbol tokenizer, from a local transformers folder."""
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2).save_pretrained(tmp_path / "llama")
    torch.manual_seed(1)
    return zoo.create_model("drums_lm", base=str(tmp_path / "llama"), init="scratch", vocab="symbols").eval()


@pytest.mark.parametrize("kwargs", [{"stop_at_end": False}, {"stop_at_end": True},
                                    {"stop_at_end": False, "max_new_lines": 2}])
def test_static_sampling_matches_the_dynamic_loop(llama_drum_lm, kwargs):
    m = llama_drum_lm
    assert supports_static(m.lm)
    prompts = [m.tokenizer.encode(t) for t in ("o-----\n---o--\n", "--o---\nSEP\n", "o")]
    with torch.no_grad():  # near-zero temperature: argmax, so both loops must write the same tokens
        dynamic = sample_ids(m, prompts, temperature=1e-4, max_new_tokens=40, decoder="dynamic", **kwargs)
        static = sample_ids(m, prompts, temperature=1e-4, max_new_tokens=40, decoder="static", check_every=3,
                            **kwargs)
    assert static == dynamic
    if kwargs.get("max_new_lines"):
        newline = m.tokenizer.encode("\n")[0]
        assert all(r.count(newline) == 2 and r[-1] == newline for r in static)


def test_stopping_early_once_every_row_ended(llama_drum_lm, monkeypatch):
    m = llama_drum_lm
    steps, eager_step = [], StaticDecoder.step
    monkeypatch.setattr(StaticDecoder, "step", lambda self: steps.append(1) or eager_step(self))
    head = torch.nn.Linear(32, m.lm.lm_head.out_features)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[m.stop_ids[-1]] = 50.0  # END is all but certain at every step
    m.lm.lm_head = head
    out = sample_ids(m, [[1, 2], [2]], max_new_tokens=50, decoder="static", check_every=4)
    assert all(r[-len(m.stop_ids):] == m.stop_ids and len(r) == len(m.stop_ids) for r in out)
    assert len(steps) == 3  # the host saw every row ended at its first check, after 4 sampled tokens


@pytest.mark.parametrize("decoder", ["dynamic", "static"])
def test_ids_past_the_tokenizer_are_never_drawn(llama_drum_lm, decoder):
    """An LM whose output rows outnumber its tokenizer's ids (a padded embedding, as Pythia's) samples only the
    tokenizer's ids, even where the padding rows are made the likeliest."""
    m = llama_drum_lm
    vocab = m.tokenizer.vocab_size
    head = torch.nn.Linear(32, vocab + 4)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[vocab:] = 50.0
    m.lm.lm_head = head
    out = sample_ids(m, [[1, 2], [2]], max_new_tokens=30, stop_at_end=False, decoder=decoder,
                     generator=torch.Generator().manual_seed(0))
    assert max(max(r) for r in out) < vocab and all(len(r) == 30 for r in out)


def test_decoder_choice_errors(llama_drum_lm):
    gpt2 = zoo.create_model("drums_gpt2_tiny").eval()
    assert not supports_static(gpt2.lm)
    with pytest.raises(ZooError, match="static decoding covers"):
        sample_ids(gpt2, [[1, 2]], max_new_tokens=3, decoder="static")
    with pytest.raises(ZooError, match="replays CUDA graphs"):
        sample_ids(llama_drum_lm, [[1, 2]], max_new_tokens=3, decoder="graph")
    with pytest.raises(ZooError, match="decoder must be one of"):
        sample_ids(llama_drum_lm, [[1, 2]], max_new_tokens=3, decoder="fast")


@pytest.mark.parametrize("decoder", ["dynamic", "static"])
def test_nan_logits_and_a_zero_temperature_are_one_error_each(llama_drum_lm, decoder):
    """NaN logits leave `draw` no token to draw (it returns the out-of-range id V): one error, not an index error
    in the embedding; a zero temperature is refused before anything runs."""
    with pytest.raises(ZooError, match="temperature must be > 0"):
        sample_ids(llama_drum_lm, [[1, 2]], temperature=0.0, max_new_tokens=3, decoder=decoder)
    with torch.no_grad():
        llama_drum_lm.lm.lm_head.weight.fill_(float("nan"))
    with pytest.raises(ZooError, match="NaN or infinite"):
        sample_ids(llama_drum_lm, [[1, 2], [2]], max_new_tokens=6, decoder=decoder, check_every=2)


def test_auto_decoder_decodes_lms_the_static_decoder_does_not_cover(llama_drum_lm):
    """``auto`` samples on every LM, also one that static decoding refuses (GPT-2), with the tokens of an explicit
    decoder."""
    gpt2 = zoo.create_model("drums_gpt2_tiny").eval()
    for m in (llama_drum_lm, gpt2):
        runs = [sample_ids(m, [[1, 2], [2]], temperature=1e-4, max_new_tokens=8, stop_at_end=False, decoder=d)
                for d in ("auto", "dynamic")]
        assert runs[0] == runs[1] and all(len(r) == 8 for r in runs[0])


@pytest.mark.parametrize("decoder", ["dynamic", "static"])
def test_no_new_token_is_one_error(llama_drum_lm, decoder):
    with pytest.raises(ZooError, match="max_new_tokens must be >= 1"):
        sample_ids(llama_drum_lm, [[1, 2]], max_new_tokens=0, decoder=decoder)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_graphed_steps_match_eager_steps_on_cuda(llama_drum_lm):
    m = llama_drum_lm.cuda()
    prompts = [m.tokenizer.encode(t) for t in ("o-----\n---o--\n", "--o---\nSEP\n", "o")]
    with torch.no_grad():
        eager = sample_ids(m, prompts, temperature=1e-4, max_new_tokens=30, decoder="static")
        graph = sample_ids(m, prompts, temperature=1e-4, max_new_tokens=30, decoder="graph")
    assert graph == eager
    dec = StaticDecoder(m.lm, 1, 4)
    with torch.no_grad():
        dec.prefill(torch.tensor([[1, 2]], device="cuda"), torch.ones(1, 2, dtype=torch.long, device="cuda"))
        step = GraphedStep(dec)
        torch.testing.assert_close(step().clone(), dec.step())
