"""The corpus builder: deterministic, resumable, split by composition, and every clip fully labelled."""
import hashlib
import json
import shutil

import numpy as np
import soundfile as sf

from engine.data.build import build
from engine.data.dataset import CorpusDataset, open_dataset

from .conftest import TINY_HOURS


def _records(root):
    return [json.loads(line) for s in ("train", "valid", "test") for line in (root / f"{s}.jsonl").read_text().splitlines()]


def _audio_digest(root):
    h = hashlib.sha256()
    for p in sorted((root / "audio").rglob("*.wav")) + sorted((root / "voice").rglob("*.wav")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_gives_identical_manifests_and_audio_whatever_the_workers(tiny_corpus, tmp_path, score_paths):
    other = tmp_path / "again"
    build(TINY_HOURS, other, seed=3, workers=2, cache=None, score_paths=score_paths, progress=False)
    for split in ("train", "valid", "test"):
        assert (other / f"{split}.jsonl").read_bytes() == (tiny_corpus / f"{split}.jsonl").read_bytes()
    assert _audio_digest(other) == _audio_digest(tiny_corpus)


def test_interrupted_build_resumes_to_the_same_corpus(tiny_corpus, tmp_path, score_paths):
    copy = tmp_path / "resume"
    shutil.copytree(tiny_corpus, copy)
    # simulate a crash: the last group never finished, its audio half written
    (copy / "parts" / "group_000002.jsonl").unlink()
    for split in ("train", "valid", "test"):
        (copy / f"{split}.jsonl").unlink()
    victim = sorted((copy / "audio").rglob("*.wav"))[-1]
    victim.write_bytes(victim.read_bytes()[:1000])
    build(TINY_HOURS, copy, seed=3, workers=1, cache=None, score_paths=score_paths, progress=False)
    assert _audio_digest(copy) == _audio_digest(tiny_corpus)


def test_a_different_seed_gives_different_music(tiny_corpus, tmp_path, score_paths):
    other = tmp_path / "seed4"
    build(10 / 3600, other, seed=4, workers=1, cache=None, score_paths=score_paths, progress=False)
    first = _records(other)[0]
    assert first["id"] not in {r["id"] for r in _records(tiny_corpus)} or \
        first["caption"] != next(r for r in _records(tiny_corpus) if r["index"] == 0)["caption"]


def test_clips_are_10s_24khz_mono_and_loudness_normalised(tiny_corpus):
    recs = _records(tiny_corpus)
    assert len(recs) == 24
    for r in recs:
        x, sr = sf.read(tiny_corpus / r["audio"])
        assert sr == 24_000 and x.ndim == 1 and len(x) == 240_000
        rms_db = 20 * np.log10(np.sqrt(np.mean(x ** 2)))
        assert -24 < rms_db < -18, r["id"]
        assert np.abs(x).max() < 0.95
        # music all the way through: no silent second
        sec = np.sqrt(np.mean(x.reshape(10, -1) ** 2, axis=1))
        assert sec.min() > 10 ** (-45 / 20), r["id"]


def test_every_clip_has_labels_aligned_with_its_audio(tiny_corpus):
    for r in _records(tiny_corpus):
        assert r["caption"] == r["captions"][0] and len(r["captions"]) == 3
        t = r["tags"]
        assert {"style", "mood", "tempo", "key", "mode", "instruments"} <= set(t)
        track = np.array(r["melody"]["track"])
        assert len(track) == 250 and (track > 0).mean() > 0.3
        notes = r["melody"]["notes"]
        # the track is the notes sampled at 25 Hz
        for k in range(0, 250, 17):
            centre = (k + 0.5) / 25
            sounding = [p for p, s, e in notes if s <= centre < e]
            assert (track[k] in sounding) if sounding else track[k] == 0
        v, vsr = sf.read(tiny_corpus / r["voice"])
        assert vsr == r["voice_info"]["sample_rate"] and abs(len(v) / vsr - 10.0) < 0.01
        assert r["voice_info"]["kind"] in ("hum", "whistle", "sing")


def test_splits_never_share_a_composition(tiny_corpus):
    by_split = {}
    for r in _records(tiny_corpus):
        by_split.setdefault(r["split"], set()).add(r["melody"]["composition"])
    splits = list(by_split)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            assert not (by_split[a] & by_split[b])


def test_corpus_dataset_loads_examples(tiny_corpus):
    ds = open_dataset(tiny_corpus, "train", load_voice=True)
    assert isinstance(ds, CorpusDataset) and len(ds) > 10
    ex = ds[0]
    assert ex.audio.shape == (240_000,) and ex.sample_rate == 24_000
    assert ex.melody_track.shape == (250,) and ex.voice is not None and ex.voice_rate == ds.records[0]["voice_info"]["sample_rate"]
    stats = json.loads((tiny_corpus / "corpus.json").read_text())
    assert stats["clips"] == 24 and stats["hours"] > 0.06


def test_a_build_of_generated_tunes_has_new_compositions_and_its_notes_can_be_remade(tmp_path, score_paths):
    """``--generated 1``: every clip's tune is generated, a composition no other build has; the clips' exact notes
    are re-made from the build's own parameters (what the note transcriber trains on)."""
    import json

    from engine.data.build import clip_notes, melody_pool
    out = tmp_path / "generated"
    build(30 / 3600, out, seed=5, workers=1, cache=None, score_paths=score_paths, progress=False, generated=1.0)
    records = [json.loads(line) for split in ("train", "valid", "test")
               for line in (out / f"{split}.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["melody"]["composition"].startswith("generated-5-") for r in records)
    assert json.loads((out / "build.json").read_text())["generated_fraction"] == 1.0
    pool = melody_pool(out, cache=None)
    for r in records:
        melody, notes = clip_notes(r, pool)
        assert [[p, round(a, 4), round(b, 4)] for p, a, b in melody] == r["melody"]["notes"]
        assert len(notes) > len(melody), "chords, bass and pad besides the melody"
