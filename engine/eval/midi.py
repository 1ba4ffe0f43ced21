"""Are a clip's MIDI notes the notes that sound? ``python -m engine.eval.bench midi [--clips 96]``.

On corpus test clips, whose notes are exact (``engine.data.build.clip_notes``), the transcriber's notes are scored
with mir_eval's note F1 (onsets within 50 ms, offsets ignored): the melody track against the clip's melody, at the
exact pitch and by pitch class (an octave slip forgiven), and the all-notes track against every pitched note of the
arrangement. The clip's hum (the corpus's rendition of its melody) goes through the pitch tracker into the file's
hum track and is read back: the notes must survive the file (same pitches, onsets within 5 ms), and the F1 of the
hum's notes against the melody says how well a hummed melody's MIDI keeps the tune (pitch class: hums are sung in
any octave).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ..audio import load_audio
from ..data.build import clip_notes, melody_pool
from ..melody import melody_from_audio
from ..midi import hum_notes, load_transcriber, read_midi, write_midi

ONSET_TOLERANCE = 0.05


def note_f1(ref: list, est: list, pitch_class: bool = False) -> float:
    """mir_eval's onset-only note F1 of ``est`` against ``ref`` (each (pitch, start, end) or ``Note``)."""
    from mir_eval.transcription import precision_recall_f1_overlap
    from mir_eval.util import midi_to_hz

    def arrays(notes):
        notes = [(n.pitch, n.start, n.end) if hasattr(n, "pitch") else n for n in notes]
        p = np.array([(60 + q % 12) if pitch_class else q for q, _, _ in notes], dtype=float)
        iv = np.array([[a, max(b, a + 1e-3)] for _, a, b in notes], dtype=float).reshape(-1, 2)
        return iv, midi_to_hz(p)

    if not ref and not est:
        return 1.0
    if not ref or not est:
        return 0.0
    (ri, rp), (ei, ep) = arrays(ref), arrays(est)
    return float(precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=ONSET_TOLERANCE, offset_ratio=None)[2])


def run(corpus: Path, n_clips: int, assets: str = "assets", progress=None) -> dict:
    records = [json.loads(line) for line in (Path(corpus) / "test.jsonl").read_text().splitlines()]
    if not records:
        raise ValueError(f"{corpus} has no test clips")
    pick = np.linspace(0, len(records) - 1, min(n_clips, len(records))).round().astype(int)
    pool, model, rows = melody_pool(corpus), load_transcriber(assets), []
    with tempfile.TemporaryDirectory() as tmp:
        for i in pick:
            r = records[i]
            melody, notes = clip_notes(r, pool)
            got_melody, got_notes = model.transcribe(load_audio(Path(corpus) / r["audio"], 24_000))
            voice_sr = r["voice_info"]["sample_rate"]
            hum = hum_notes(melody_from_audio(load_audio(Path(corpus) / r["voice"], voice_sr), voice_sr).midi)
            path = write_midi(Path(tmp) / "clip.mid", {"melody": got_melody, "all notes": got_notes, "hum": hum},
                              120.0, r["tags"]["key"])
            back = read_midi(path)[0]["hum"]
            kept = len(back) == len(hum) and all(a.pitch == b.pitch and abs(a.start - b.start) < 0.005
                                                 for a, b in zip(back, hum))
            rows.append({"id": r["id"], "style": r["tags"]["style"],
                         "melody_f1": note_f1(melody, got_melody), "melody_f1_pc": note_f1(melody, got_melody, True),
                         "all_f1": note_f1(notes, got_notes), "hum_f1_pc": note_f1(melody, hum, True),
                         "hum_kept": kept, "melody_notes": len(melody), "found_melody_notes": len(got_melody)})
            if progress:
                progress()
    def mean(k: str) -> float:
        return round(float(np.mean([row[k] for row in rows])), 3)
    summary = {"clips": len(rows), "melody_f1": mean("melody_f1"), "melody_f1_pitch_class": mean("melody_f1_pc"),
               "all_notes_f1": mean("all_f1"), "hum_f1_pitch_class": mean("hum_f1_pc"),
               "hum_kept_share": mean("hum_kept"), "target_melody_f1": 0.7}
    return {"summary": summary, "rows": rows}


def markdown(full: dict, machine: str, day: str) -> str:
    s = full["summary"]
    return "\n".join([
        f"MIDI of {s['clips']} corpus test clips (notes exact), mir_eval note F1, onsets within 50 ms, offsets "
        f"ignored ({machine}, {day}):", "",
        "| track | F1 | against |", "| --- | --- | --- |",
        f"| melody, exact pitch | {s['melody_f1']:.3f} | the clip's melody (target 0.7) |",
        f"| melody, pitch class | {s['melody_f1_pitch_class']:.3f} | the clip's melody |",
        f"| all notes | {s['all_notes_f1']:.3f} | every pitched note of the arrangement |",
        f"| hum, pitch class | {s['hum_f1_pitch_class']:.3f} | the melody the hum sings |",
        "", f"Hum notes read back from the file unchanged: {s['hum_kept_share']:.0%} of clips."])
