"""The command line: ``python -m engine.generate --prompt TEXT [--melody FILE] [--duration S] [--seed N]
[--temperature T] [--top-k K] [--guidance G] [--bpm B] [--key KEY] [--drafts N] [--continue FILE]
[--reference FILE [--reference-weight W]] [--loop-bars N [--beats-per-bar B]] [--midi OUT.mid] --out OUT.wav``.

``--loop-bars N`` makes a seamless loop of exactly N bars (``engine.loops``) instead of a clip of ``--duration``.
``--midi`` also writes the clip as MIDI (``engine.midi``: its melody, all its notes and the hum's), at the tempo
asked for or else detected, in the key asked for or else detected.

Bad input exits with status 2 and one line on stderr, before any model is loaded where it can be.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .audio import AudioError, load_audio, resample
from .loops import check_loop, loop_bpm, make_loop
from .melody import MelodyError, melody_from_audio
from .pipeline import Cantus
from .reference import check_reference
from .settings import (
    DRAFT_SEMANTIC,
    DRAFTS,
    SAMPLE_RATE,
    STAGE_DEFAULTS,
    TEXT_ONLY_DEFAULTS,
    GenerationError,
    Request,
    Segment,
    Settings,
    prompt_bpm,
)


def build_request(prompt: str | Sequence[Segment], settings: Settings, melody_file: str | None = None,
                  continue_file: str | None = None, reference_file: str | None = None
                  ) -> tuple[Request, np.ndarray | None]:
    """-> (the request, the hum's pitch track: MIDI at 25 Hz, NaN unvoiced; None without a hum)."""
    segments = list(prompt) if not isinstance(prompt, str) else [Segment(prompt, settings.duration)]
    melody = track = None
    if melody_file:
        audio, sr = _read(melody_file)
        try:
            heard = melody_from_audio(audio, sr)
        except MelodyError as e:
            raise GenerationError(str(e)) from None
        melody, track = heard.tokens, heard.midi
    cont = None
    if continue_file:
        audio, sr = _read(continue_file)
        cont = resample(audio, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else audio
    ref = None
    if reference_file:
        audio, sr = _read(reference_file)
        ref = check_reference(resample(audio, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else audio)
    return Request(segments, settings, melody, cont, ref), track


def _read(path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf
    try:
        info = sf.info(path)
        sr = int(info.samplerate)
    except (RuntimeError, OSError):  # a format soundfile cannot read: load_audio decodes it with ffmpeg
        sr = SAMPLE_RATE
    try:
        return load_audio(path, sr, max_seconds=600), sr
    except AudioError as e:
        raise GenerationError(str(e)) from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.generate", description="Text (+ hum) to music.")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--melody", help="a hummed, whistled or sung recording to follow")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=1.0,
                    help="scales the stages' temperatures (text alone "
                    f"{' / '.join(f'{t:g}' for t in TEXT_ONLY_DEFAULTS.values())}, the semantic stage at "
                    f"{DRAFT_SEMANTIC:g} when drafting with no tempo; with a melody or continuing audio "
                    f"{' / '.join(f'{t:g}' for t in STAGE_DEFAULTS.values())})")
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--bpm", type=float, default=None,
                    help="tempo to follow (default: a BPM the prompt names, or one for a tempo word such as 'slow')")
    ap.add_argument("--key", default=None, help="key, e.g. 'A minor', 'F#m', 'Bb major' (default: one the prompt "
                    "names); a hummed melody is moved to it")
    ap.add_argument("--drafts", type=int, default=DRAFTS,
                    help="semantic drafts ranked against the prompt, text alone (1: the first draw)")
    ap.add_argument("--continue", dest="cont", help="an audio clip to continue")
    ap.add_argument("--reference", help="a recording whose style to follow ('sounds like this'; the prompt may be empty)")
    ap.add_argument("--reference-weight", type=float, default=0.5,
                    help="with a reference and a prompt: the reference's share of the style, 0-1")
    ap.add_argument("--loop-bars", type=int, default=None,
                    help="a seamless loop of this many bars, at --bpm or the prompt's tempo (else its own, detected)")
    ap.add_argument("--beats-per-bar", type=int, default=4, help="with --loop-bars: beats in a bar")
    ap.add_argument("--midi", default=None, help="also write the clip as a MIDI file (melody, all notes, the hum)")
    ap.add_argument("--assets", default="assets")
    ap.add_argument("--backend", choices=["onnx", "torch"], default="onnx")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    try:
        settings = Settings(a.duration, a.seed, a.temperature, a.top_k, 1.0, a.guidance, a.bpm, a.drafts,
                            a.key, a.reference_weight).validate()
        if a.loop_bars is not None:
            check_loop(a.loop_bars, a.beats_per_bar, loop_bpm(Request([Segment(a.prompt, 10.0)], settings)))
            if a.cont:
                raise GenerationError("--loop-bars makes a loop from the prompt (and a hum); it does not --continue")
        if a.midi is not None and not a.midi.lower().endswith((".mid", ".midi")):
            raise GenerationError(f"--midi names a .mid file, not {a.midi!r}")
        req, hum = build_request(a.prompt, settings, a.melody, a.cont, a.reference)
        model = Cantus.load(a.assets, a.backend)
        for i, seg in enumerate(req.segments):  # a bad prompt or tempo fails before the progress bar starts
            model.style_tokens(req, i)
            if settings.bpm is None:
                prompt_bpm(seg.prompt)
        from tqdm import tqdm
        bar = tqdm(total=100, desc="generating", unit="%")

        def progress(f, what):
            bar.n = int(100 * f)
            bar.set_postfix_str(what)
            bar.refresh()
        if a.loop_bars is not None:
            loop = make_loop(model, req, a.loop_bars, a.beats_per_bar, progress)
            audio, made = loop.audio, {"loop": loop.describe(), "bpm": loop.bpm}
        else:
            audio, made = model.generate(req, progress), {}
        bar.close()
    except (GenerationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import soundfile as sf
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    sf.write(a.out, audio, SAMPLE_RATE, subtype="PCM_16")
    if a.midi:
        try:
            made["midi"] = str(write_clip_midi(a.midi, audio, req, hum, made.get("bpm"), a.assets))
        except (FileNotFoundError, ValueError) as e:
            print(f"error: the clip is in {a.out}, but its MIDI could not be written: {e}", file=sys.stderr)
            return 2
    print(json.dumps({"out": a.out, "seconds": round(len(audio) / SAMPLE_RATE, 2), **asdict(settings),
                      "controls": req.controls().to_json(), **made}))
    return 0


def write_clip_midi(path: str, audio: np.ndarray, req: Request, hum: np.ndarray | None, bpm: float | None,
                    assets: str) -> Path:
    """The clip as MIDI at the tempo and key asked for (else the ones detected), with the hum's notes moved as a
    named key moved the hum."""
    from .analysis import analyse
    from .controls import transpose_tokens
    from .midi import clip_midi, hum_notes
    c, found = req.controls(), analyse(audio)
    shift = transpose_tokens(req.melody, c.tonic, c.mode or "major")[1] if hum is not None and req.settings.key \
        else 0
    return clip_midi(path, audio, bpm or req.settings.bpm or found["bpm"], c.key or found["key"],
                     hum_notes(hum, shift=shift) if hum is not None else None, assets)


if __name__ == "__main__":
    sys.exit(main())
