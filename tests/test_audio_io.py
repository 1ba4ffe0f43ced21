"""Loading user and dataset audio: any rate, any channel count, and readable errors for bad files."""
import numpy as np
import pytest
import soundfile as sf

from engine.audio import AudioError, load_audio
from engine.data.dataset import ExternalDataset, open_dataset


def _tone(sr, seconds=1.0, f=440.0):
    t = np.arange(int(sr * seconds)) / sr
    return 0.5 * np.sin(2 * np.pi * f * t)


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000, 96000])
def test_any_rate_and_stereo_become_24k_mono_with_pitch_kept(tmp_path, sr):
    x = np.stack([_tone(sr), _tone(sr)], axis=1)
    p = tmp_path / "a.wav"
    sf.write(p, x, sr, subtype="PCM_24")
    y = load_audio(p, 24_000)
    assert y.ndim == 1 and abs(len(y) - 24_000) <= 2
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 24_000 / len(y) - 440) < 3


def test_bad_files_get_readable_errors(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("these are my lyrics, not audio")
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty)
    with pytest.raises(AudioError, match="not a readable audio file|needs ffmpeg"):
        load_audio(text)
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(8000 * 20), 8000)
    with pytest.raises(AudioError, match="limit"):
        load_audio(long, max_seconds=10)


def test_external_musiccaps_style_dataset(tmp_path):
    sf.write(tmp_path / "abc123.wav", np.stack([_tone(44100, 3.0)] * 2, 1), 44100)
    sf.write(tmp_path / "song.flac", _tone(16000, 2.0, 220.0), 16000)
    (tmp_path / "captions.csv").write_text(
        "ytid,start_s,end_s,caption\n"
        "abc123,1,2,\"A calm piano tune, 70 BPM\"\n"
        "gone,0,10,a clip whose file is missing\n")
    ds = open_dataset(tmp_path)
    assert isinstance(ds, ExternalDataset) and len(ds) == 1 and ds.missing == ["gone"]
    ex = ds[0]
    assert ex.caption.startswith("A calm piano") and abs(len(ex.audio) - 24_000) <= 2
    (tmp_path / "index.jsonl").write_text('{"path": "song.flac", "caption": "low hum"}\n')
    ex = ExternalDataset(tmp_path / "index.jsonl")[0]
    assert ex.sample_rate == 24_000 and abs(len(ex.audio) - 48_000) <= 2
    (tmp_path / "bad.csv").write_text("file,text\nx.wav,hello\n")
    with pytest.raises(ValueError, match="caption"):
        ExternalDataset(tmp_path / "bad.csv")
