"""The codec and hum-tracker benchmarks on a tiny corpus: every number the issues ask for is reported, the codec's
on the mix and on the melody alone (the clip's voice-like rendition)."""
import pytest


@pytest.mark.skipif(__import__("shutil").which("ffmpeg") is None, reason="the Opus reference needs ffmpeg")
def test_codec_bench_reports_mel_distances_pitch_on_mix_and_melody_and_code_usage(tiny_corpus, tmp_path):
    from engine.codec import Codec, CodecConfig
    from engine.eval.codec_bench import bench_codec, markdown

    Codec(CodecConfig(channels=4, max_channels=16, decoder="istft", decoder_dim=16, decoder_blocks=1)).save(tmp_path)
    r = bench_codec(tiny_corpus, 1, tmp_path, None)
    assert set(r["mel_distance"]) == {"opus_6kbps", "opus_12kbps", "opus_24kbps", "cantus_2kbps", "cantus_4kbps"}
    assert r["mel_distance"]["opus_24kbps"] < r["mel_distance"]["opus_6kbps"]  # the reference behaves
    assert r["pitch_frames"] > 0 and r["melody_pitch_frames"] > 0  # the hum-like rendition is pitched throughout
    assert 0 <= r["melody_pitch_agreement"] <= 1 and len(r["codebook_usage"]) == 8
    # the pitch target is read against the reference codec on the same frames: Opus at 24 kbps keeps a melody's pitch
    assert set(r["opus_pitch_agreement"]) == {"6kbps", "12kbps", "24kbps"}
    assert r["opus_pitch_agreement"]["24kbps"]["melody"] > 0.5
    assert "melody alone" in markdown(r, tmp_path)


def test_melody_bench_scores_the_hum_tracker_on_test_renditions_per_voice(tiny_corpus):
    from engine.eval.codec_bench import bench_melody, markdown_melody

    r = bench_melody(tiny_corpus, 3)
    assert r["clips"] >= 1 and r["voiced_frames"] > 0
    assert set(r["by_voice"]) <= {"hum", "sing", "whistle"} and r["by_voice"]
    assert r["pitch_class_agreement"] > 0.5  # the tracker, not chance (1/12), on real renditions
    assert "target 85%" in markdown_melody(r)
