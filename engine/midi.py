"""A clip as a Standard MIDI File: its melody, the notes of the whole clip, and the hum it was made from.

``clip_midi(path, audio, bpm, key, hum)`` transcribes the clip (``engine.transcribe``: the melody on one track, every pitched note
on another) and writes a type-1 file with mido: a conductor track with the clip's tempo, 4/4 time and key
signature, then "melody", "all notes" and, when the clip was hummed, "hum" (the pitch tracker's notes, moved by
the semitones a named key moved the hum). Note times are placed on the file's tempo grid (480 ticks per beat), so
a DAW that reads the tempo sees the notes where they sound.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .controls import KEYS
from .transcribe import MIN_FRAMES, Note, Transcriber

TICKS = 480
PROGRAMS = {"melody": 0, "all notes": 0, "hum": 52}  # GM piano, piano, choir aahs


def hum_notes(midi: np.ndarray, frame_rate: float = 25.0, shift: int = 0) -> list[Note]:
    """A pitch track (MIDI per frame, NaN unvoiced; ``engine.melody.MelodyTrack.midi``) -> notes: runs of frames
    that round to the same semitone, at least ``MIN_FRAMES`` long (a glide's passing semitones are dropped)."""
    midi = np.asarray(midi, dtype=float)
    semis = np.where(np.isnan(midi), -1, np.round(np.nan_to_num(midi, nan=-1.0))).astype(int)
    notes, start = [], 0
    for t in range(1, len(semis) + 1):
        if t == len(semis) or semis[t] != semis[start]:
            if semis[start] > 0 and t - start >= MIN_FRAMES:
                notes.append(Note(int(semis[start]) + shift, start / frame_rate, t / frame_rate))
            start = t
    return notes


def key_signature(key: str | None) -> str | None:
    """"A minor" -> "Am", "Eb major" -> "Eb": a key as Cantus names it (``engine.controls.KEYS``), spelt as a MIDI
    key signature; None for no key or another name."""
    if key not in KEYS:
        return None
    note, _, mode = key.partition(" ")
    return note + ("m" if mode == "minor" else "")


def write_midi(path: str | Path, tracks: dict[str, Sequence[Note]], bpm: float, key: str | None = None) -> Path:
    """``tracks`` {name: notes} -> a type-1 MIDI file at ``bpm`` with the key signature of ``key`` ("A minor")."""
    import mido

    if not 20 <= bpm <= 400:
        raise ValueError(f"a MIDI file's tempo must be 20-400 BPM, not {bpm:g}")
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS)
    conductor = mido.MidiTrack([mido.MetaMessage("track_name", name="Cantus", time=0),
                                mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
                                mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0)])
    sig = key_signature(key)
    if sig:
        conductor.append(mido.MetaMessage("key_signature", key=sig, time=0))
    mid.tracks.append(conductor)
    per_second = bpm / 60 * TICKS
    for ch, (name, notes) in enumerate(tracks.items()):
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0),
                                mido.Message("program_change", channel=ch, program=PROGRAMS.get(name, 0), time=0)])
        events = []
        for n in notes:
            if not 0 <= n.pitch <= 127:
                continue
            on = round(n.start * per_second)
            events += [(on, 1, n.pitch, n.velocity), (max(round(n.end * per_second), on + 1), 0, n.pitch, 0)]
        now = 0
        for tick, is_on, pitch, vel in sorted(events):  # at equal ticks note-offs first: a repeated note re-strikes
            track.append(mido.Message("note_on" if is_on else "note_off", channel=ch, note=pitch, velocity=vel,
                                      time=tick - now))
            now = tick
        mid.tracks.append(track)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    mid.save(str(tmp))
    tmp.replace(path)
    return path


@functools.lru_cache(maxsize=2)
def load_transcriber(assets: str | Path = "assets") -> Transcriber:
    """The shipped transcriber (FileNotFoundError naming the missing files when it is not there)."""
    return Transcriber.load(Path(assets) / "transcriber")


def clip_midi(path: str | Path, audio: np.ndarray, bpm: float, key: str | None = None,
              hum: Sequence[Note | Sequence[float]] | None = None, assets: str | Path = "assets") -> Path:
    """24 kHz audio -> a MIDI file of its melody and all its notes (+ the hum's notes: ``Note``s or (pitch,
    start, end)) at ``bpm`` in ``key``."""
    melody, notes = load_transcriber(assets).transcribe(audio)
    tracks = {"melody": melody, "all notes": notes}
    if hum:
        tracks["hum"] = [n if isinstance(n, Note) else Note(int(n[0]), float(n[1]), float(n[2])) for n in hum]
    return write_midi(path, tracks, bpm, key)


def read_midi(path: str | Path) -> tuple[dict[str, list[Note]], float, str | None]:
    """A file ``write_midi`` wrote -> ({track name: notes}, bpm, mido key name or None)."""
    import mido

    mid = mido.MidiFile(str(path))
    tempo, key, out = 500_000, None, {}
    for msg in mid.tracks[0]:
        if msg.type == "set_tempo":
            tempo = msg.tempo
        elif msg.type == "key_signature":
            key = msg.key
    per_second = mido.tempo2bpm(tempo) / 60 * mid.ticks_per_beat
    for track in mid.tracks[1:]:
        name, now, open_notes, notes = "", 0, {}, []
        for msg in track:
            now += msg.time
            if msg.type == "track_name":
                name = msg.name
            elif msg.type == "note_on" and msg.velocity > 0:
                open_notes[msg.note] = (now, msg.velocity)
            elif msg.type in ("note_off", "note_on") and msg.note in open_notes:
                start, vel = open_notes.pop(msg.note)
                notes.append(Note(msg.note, start / per_second, now / per_second, vel))
        out[name] = sorted(notes, key=lambda n: (n.start, n.pitch))
    return out, mido.tempo2bpm(tempo), key
