"""Drum MIDI in and out, with mido: onsets with their ticks, and files on the General MIDI drum channel.

`read_performance` turns the drum channel of a MIDI file (General MIDI channel 10, index 9: the channel every file of
the Groove MIDI Dataset uses) into a `Performance` (onsets in ticks from the start, the resolution and the time
signature); a file that is not MIDI, or that has no hit on the drum channel, is one `ZooError` naming it.
`write_drum_midi` writes onsets as a type-1 file: a tempo/metre track and a drum track on channel 10 (index 9).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...errors import ZooError, require
from ...io import atomic_path

DRUM_CHANNEL = 9  # MIDI channel 10, General MIDI percussion


@dataclass(frozen=True)
class Onset:
    """One drum hit: absolute time in ticks, General MIDI drum pitch, velocity 1-127."""

    tick: int
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Performance:
    """The onsets of one MIDI file in time order.

    Attributes:
        onsets: every note-on with velocity > 0 on the drum channel, sorted by tick (ties keep file order).
        ticks_per_beat: the file's resolution (480 in the Groove MIDI Dataset).
        time_signature: (numerator, denominator) of the first time signature; (4, 4) when the file has none,
            as the MIDI standard specifies.
        bpm: the first tempo (120 when the file has none).
        source: the file it came from, for error messages.
    """

    onsets: tuple[Onset, ...]
    ticks_per_beat: int
    time_signature: tuple[int, int]
    bpm: float
    source: str


def read_performance(path: str | Path) -> Performance:
    """Read the drum-channel onsets of every track of a MIDI file (type 0 or 1); notes on other channels (a piano,
    a bass) are not drums and are left out.

    Raises:
        ZooError: the file is missing, empty, truncated or not a readable MIDI file, counts time in SMPTE frames
            instead of ticks per beat, has a 0/x time signature, or holds no note-on on the drum channel.
    """
    mido = require("mido", "drums")
    path = Path(path)
    if path.is_dir():
        raise ZooError(f"{path} is a folder, not a MIDI file; give the path of a .mid file")
    if not path.is_file():
        raise ZooError(f"MIDI file {path} does not exist")
    try:
        mid = mido.MidiFile(str(path), clip=True)
    except Exception as exc:  # mido's parser raises many kinds (its KeySignatureError is a bare Exception)
        raise ZooError(f"{path} is not a readable MIDI file ({_read_failure(path, exc)}); give the complete file, "
                       f"or re-export it as a standard MIDI file") from None
    if mid.type == 2:
        raise ZooError(f"{path} is a type-2 (asynchronous) MIDI file; re-export it as type 0 or 1")
    if mid.type not in (0, 1):
        raise ZooError(f"{path} declares MIDI file format {mid.type}, which does not exist (0, 1 or 2); re-export "
                       f"it as a standard MIDI file of type 0 or 1")
    if not 0 < mid.ticks_per_beat < 0x8000:
        raise ZooError(f"{path} gives its time in {'SMPTE frames' if mid.ticks_per_beat else '0 ticks per beat'}, "
                       f"not in ticks per beat; re-export it with a musical time base (e.g. 480 ticks per beat)")
    events = []  # (tick, track, index, message): a stable merge of the tracks by absolute time
    for t, track in enumerate(mid.tracks):
        tick = 0
        for i, msg in enumerate(track):
            tick += msg.time
            if msg.type in ("note_on", "time_signature", "set_tempo"):
                events.append((tick, t, i, msg))
    events.sort(key=lambda e: e[:3])
    onsets, signature, tempo, other = [], None, None, set()
    for tick, _, _, msg in events:
        if msg.type == "note_on" and msg.velocity > 0 and msg.channel == DRUM_CHANNEL:
            onsets.append(Onset(tick, msg.note, msg.velocity))
        elif msg.type == "note_on" and msg.velocity > 0:
            other.add(msg.channel + 1)
        elif msg.type == "time_signature" and signature is None:
            signature = (msg.numerator, msg.denominator)
            if not msg.numerator:
                raise ZooError(f"{path} has a time signature of 0/{msg.denominator}; re-export it with its metre "
                               f"(e.g. 4/4)")
        elif msg.type == "set_tempo" and tempo is None:
            if msg.tempo <= 0:
                raise ZooError(f"{path} sets a tempo of {msg.tempo} microseconds per beat; re-export it with its "
                               f"tempo (e.g. 500000, 120 bpm)")
            tempo = mido.tempo2bpm(msg.tempo)
    if other and not onsets:
        raise ZooError(f"{path} has no notes on the drum channel (MIDI channel 10), only on channel(s) "
                       f"{', '.join(map(str, sorted(other)))}; move the drum part to channel 10, the General MIDI "
                       f"percussion channel")
    if not onsets:
        raise ZooError(f"{path} has no notes (an empty MIDI file); give a file with a drum performance")
    return Performance(tuple(onsets), mid.ticks_per_beat, signature or (4, 4), tempo or 120.0, str(path))


def _read_failure(path: Path, exc: Exception) -> str:
    """What was wrong with a MIDI file that mido could not read, for the error message (mido's EOFError has none)."""
    size = path.stat().st_size
    if not size:
        return "the file is empty, 0 bytes"
    if isinstance(exc, EOFError):
        return f"it ends in the middle of its data after {size} bytes: the file is truncated"
    return str(exc) or type(exc).__name__


def write_drum_midi(onsets: list[Onset], path: str | Path, *, ticks_per_beat: int = 480, bpm: float = 120.0,
                    time_signature: tuple[int, int] = (4, 4), note_ticks: int | None = None) -> Path:
    """Write drum onsets to ``path`` atomically (type 1: a tempo/metre track and a drum track on channel 10).

    Every hit gets a note-off ``note_ticks`` later (default: a 32nd note), so no note hangs in a sampler.
    """
    mido = require("mido", "drums")
    note_ticks = note_ticks or ticks_per_beat // 8
    meta = mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
        mido.MetaMessage("time_signature", numerator=time_signature[0], denominator=time_signature[1], time=0),
    ])
    events = []  # (tick, order, message): note-offs sort before note-ons at the same tick
    for o in onsets:
        events.append((o.tick, 1, mido.Message("note_on", channel=DRUM_CHANNEL, note=o.pitch, velocity=o.velocity)))
        events.append((o.tick + note_ticks, 0, mido.Message("note_off", channel=DRUM_CHANNEL, note=o.pitch,
                                                            velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    drums, last = mido.MidiTrack([mido.MetaMessage("track_name", name="drums", time=0)]), 0
    for tick, _, msg in events:
        drums.append(msg.copy(time=tick - last))
        last = tick
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat, tracks=[meta, drums])
    path = Path(path)
    with atomic_path(path) as tmp:
        mid.save(str(tmp))
    return path
