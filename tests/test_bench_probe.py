"""The codec pitch probe: a probe reads pitch where a representation carries it and not where it does not, and the
bench runs end to end on a tiny corpus and codec."""
import numpy as np
import torch

from engine.eval.codec_probe import ClipFeatures, markdown, probe_accuracy, run, spectrum, train_probe

SR, HOP = 24_000, 480


def _tone_clip(rng, frames: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A melody of harmonic tones, one note per 10 frames (MIDI 40-80): audio and its per-frame MIDI pitch."""
    notes = np.repeat(rng.integers(40, 80, frames // 10), 10).astype(float)
    f0 = 440 * 2 ** ((np.repeat(notes, HOP) - 69) / 12)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(h * phase) / h for h in range(1, 5)) * 0.2
    return x.astype(np.float32), notes


def _features(rng, n: int) -> list[ClipFeatures]:
    out = []
    for _ in range(n):
        x, notes = _tone_clip(rng)
        spec = spectrum(torch.from_numpy(x), HOP, SR)[:, : len(notes)].numpy()
        dynamics = np.repeat(rng.normal(size=len(notes) // 10), 10)[None]  # each note's loudness, not its pitch
        out.append(ClipFeatures({"audio": spec.astype(np.float16), "latent": dynamics.astype(np.float16)}, None,
                                notes, np.ones(len(notes), bool), np.ones(len(notes), bool)))
    return out


def test_a_probe_reads_pitch_from_a_spectrum_and_not_from_dynamics_alone():
    rng = np.random.default_rng(0)
    train, test = _features(rng, 24), _features(rng, 6)
    probe, mean, std = train_probe(train, "audio", steps=200, batch=8, crop=64)
    hits, total = probe_accuracy(probe, mean, std, test, "audio")
    assert total == 6 * 200 and hits / total > 0.8
    probe, mean, std = train_probe(train, "latent", steps=200, batch=8, crop=64)
    hits, total = probe_accuracy(probe, mean, std, test, "latent")
    assert hits / total < 0.2  # the notes' dynamics: near chance over 40 semitones


def test_probe_bench_runs_every_representation_on_a_tiny_codec(tiny_corpus, tiny_assets):
    r = run(tiny_corpus, 2, 1, ["melody"], tiny_assets / "codec", steps=5)
    row = r["melody"]
    assert row["frames"] > 0 and 0 <= row["roundtrip_pesto"] <= 1
    # the tiny codec does not read semantic ids, so the probe that adds them is left out rather than faked
    assert set(row["probe"]) == {"audio", "latent", "codes_4", "codes_8", "roundtrip"}
    assert "| melody |" in markdown(r, "x86_64", "2026-12-02", 5)
