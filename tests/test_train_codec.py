"""The codec training entry point on a tiny config: trains, evaluates, keeps the best, resumes, ships only if better."""
import json

import torch

from engine.codec import Codec
from engine.train import codec as train_codec

TINY_ARGS = ["--channels", "4", "--max-channels", "16", "--batch", "2", "--seconds", "0.2", "--vq-warmup", "2",
             "--eval-every", "3", "--eval-clips", "2", "--ckpt-every", "2"]


def test_train_resume_and_ship(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_codec.main(["autoencoder", "--data", str(tiny_corpus), "--out", str(out), "--steps", "4", *TINY_ARGS]) == 0
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["step"] == 4 and len(ck["history"]) == 2  # evaluated at step 3 and at the end
    flags = [bool(v) for k, v in ck["modules"]["model"].items() if k.endswith("initialised")]
    assert len(flags) == 8 and all(flags)  # codebooks were initialised on warmed-up latents
    best = Codec.load(out / "best")
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert {"mel_4", "mel_8", "step"} <= set(metrics)

    assert train_codec.main(["autoencoder", "--data", str(tiny_corpus), "--out", str(out), "--steps", "6", *TINY_ARGS]) == 0
    assert "resumed" in capsys.readouterr().err
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 6

    assets = tmp_path / "assets"
    ship = ["autoencoder", "--out", str(out), "--ship", "--assets", str(assets)]
    assert train_codec.main(ship) == 0
    assert Codec.load(assets).cfg == best.cfg
    worse = json.loads((assets / "metrics.json").read_text())
    worse["mel_8"] += 1.0
    (out / "best" / "metrics.json").write_text(json.dumps(worse))
    assert train_codec.main(ship) == 1  # not better: nothing replaced
    assert json.loads((assets / "metrics.json").read_text())["mel_8"] == worse["mel_8"] - 1.0


def test_pitch_loss_charges_a_wrong_note_not_a_detuned_one():
    from engine.codec.losses import pitch_loss
    t = torch.arange(24_000) / 24_000
    def tone(f):
        return 0.1 * torch.sin(2 * torch.pi * f * t)[None]
    a4 = tone(440.0)
    assert float(pitch_loss(a4, a4, 24_000)) == 0.0
    semitone, detuned = float(pitch_loss(a4, tone(466.16), 24_000)), float(pitch_loss(a4, tone(441.0), 24_000))
    assert semitone > 3 * detuned, (semitone, detuned)


def test_pitch_loss_from_a_lower_note_hears_a_bass_line_a_semitone_off():
    """A2 (110 Hz) sits below the default C3 bands, which see only the edge of its spectral peak; ``low=36`` gives it
    a band of its own."""
    from engine.codec.losses import pitch_loss
    t = torch.arange(24_000) / 24_000
    def tone(f):
        return 0.1 * torch.sin(2 * torch.pi * f * t)[None]
    a2, b_flat2 = tone(110.0), tone(116.54)
    assert float(pitch_loss(a2, a2, 24_000, low=36)) == 0.0
    assert float(pitch_loss(a2, b_flat2, 24_000, low=36)) > 2 * float(pitch_loss(a2, b_flat2, 24_000)) > 0


def test_phase_loss_charges_a_wrong_frequency_not_a_phase_offset():
    from engine.codec.losses import phase_loss
    t = torch.arange(24_000) / 24_000
    def tone(f, phi=0.0):
        return 0.1 * torch.sin(2 * torch.pi * f * t + phi)[None]
    a4 = tone(440.0)
    assert float(phase_loss(a4, a4)) < 1e-2
    offset, semitone = float(phase_loss(a4, tone(440.0, 1.0))), float(phase_loss(a4, tone(466.16)))
    assert offset < 0.05 and semitone > 10 * offset, (offset, semitone)


def test_fine_tuning_a_saved_istft_codec_with_the_pitch_loss_renames_its_codes(tiny_corpus, tmp_path, capsys):
    from engine.codec.model import CodecConfig
    init = tmp_path / "init"
    saved = Codec(CodecConfig(channels=4, max_channels=16, decoder="istft", decoder_dim=16, decoder_blocks=1,
                              version="old"))
    with torch.no_grad():  # a trained codec's codebooks are initialised: it quantizes from the first step
        saved.quantizer.init_from(saved.encoder(0.1 * torch.randn(2, 1, 9600)))
    saved.save(init)
    out = tmp_path / "ft"
    args = ["autoencoder", "--data", str(tiny_corpus), "--out", str(out), "--init", str(init), "--pitch-weight", "1",
            "--lr", "1e-4", "--final-lr", "1e-5", "--batch", "2", "--seconds", "0.2", "--eval-every", "2",
            "--eval-clips", "1", "--ckpt-every", "2"]
    with __import__("pytest").raises(SystemExit, match="--version"):
        train_codec.main([*args, "--steps", "2"])  # new codes need a new name, or stages would accept them
    assert train_codec.main([*args, "--steps", "2", "--version", "new"]) == 0
    tuned = Codec.load(out / "best")
    assert tuned.cfg.version == "new" and tuned.cfg.decoder == "istft"
    assert "pitch_8" in json.loads((out / "best" / "metrics.json").read_text())
    before = Codec.load(init).state_dict()
    changed = {k.split(".")[0] for k, v in tuned.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])}
    assert {"encoder", "quantizer", "decoder"} <= changed  # the whole codec learns, not only the decoder
