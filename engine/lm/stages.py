"""The three stages' configurations and how a corpus clip becomes a training example for each.

| stage    | output (delay layout)        | prefix          | aligned conditioning                  |
| -------- | ---------------------------- | --------------- | ------------------------------------- |
| semantic | semantic ids, 25 Hz (K = 1)  | 12 MuLan tokens | melody tokens (13 = absent) and beat   |
|          |                              |                 | phase (4 = absent), both 25 Hz        |
| coarse   | codec levels 1-4, 50 Hz      | 12 MuLan tokens | semantic ids, 25 Hz (ratio 2); with    |
|          |                              |                 | ``melody=True`` the melody tokens too |
| fine     | codec levels 5-8, 50 Hz      | 12 MuLan tokens | codec levels 1-4, 50 Hz               |

Training prefixes are MuLan *audio* tokens half of the time and the *text* tokens of one of the clip's captions the
other half (the corpus has captions for every clip, so the model also learns the text side of the joint space,
which is what it sees at inference); 15% of prefixes are null and 30% of melodies and beat grids absent, for
classifier-free guidance and prompts without them; ``cond_dropout`` of the null-prefix examples lose their aligned
streams too (the stage's unconditional branch in guidance). Melody tokens are the score's, with the tracker's error
modes simulated (measured on hums of the test split: ~89% of voiced frames right; misses are mostly short dropouts
and boundary shifts).

Beat grid: the quarter-beat phase (0-3) of each 25 Hz frame of a steady tempo, frame 0 on a beat, the same labels
the semantic tokenizer learned to carry (``engine.semantic.model.frame_labels``). Corpus clips start on a beat, so
training reads it from the clip's tempo; at inference it comes from a BPM the prompt names (or ``Settings.bpm``).
MuLan tokens alone set the tempo only to a bucket (slow / moderate / fast): 1 of 15 generated clips was within 8%
of the BPM asked for, before this stream.
"""
from __future__ import annotations

import torch

from ..melody import VOCAB as MELODY_VOCAB
from . import patterns
from .model import StageConfig, shift_right

CLIP_FRAMES = 250  # 10 s at 25 Hz
CODEC_FRAMES = 500  # 10 s at 50 Hz
FRAME_RATE = 25
P_NULL_PREFIX, P_NO_MELODY, P_NO_BEAT, P_TEXT = 0.15, 0.3, 0.3, 0.5
BEAT_VOCAB = 4  # quarter-beat phases; id 4 = absent
LATE_MAX = 49  # latest training start, 25 Hz frames (~2 s; the shipped stages' recipe)


def beat_grid(bpm: float, n_frames: int, start: int = 0, beat: float = 0.0) -> torch.Tensor:
    """Quarter-beat phase ids [n_frames] of frames start..start+n_frames-1 at 25 Hz, frame 0 at beat position
    ``beat`` (0: on a beat; a jam that changes tempo carries its position on, so the beat does not jump)."""
    t = (torch.arange(n_frames, dtype=torch.float64) + start) / FRAME_RATE
    return torch.floor((t * float(bpm) / 60.0 + beat) % 1.0 * 4).long().clamp(0, 3)


def default_config(name: str, n_semantic: int, codec_size: int = 1024, mulan_size: int = 1024, melody: bool = False,
                   **kw) -> StageConfig:
    """``melody``: the coarse stage also reads the melody tokens (the hum reaches the acoustic tokens directly, not
    only through the semantic ids the semantic stage drew)."""
    common = dict(prefix_len=12, prefix_vocab=mulan_size, **kw)
    if name == "semantic":
        return StageConfig(name=name, n_codebooks=1, vocab=n_semantic, cond_vocabs=(MELODY_VOCAB, BEAT_VOCAB),
                           cond_ratio=1, max_steps=CLIP_FRAMES, cond_dropout=0.5, **common)
    if name == "coarse":
        return StageConfig(name=name, n_codebooks=4, vocab=codec_size,
                           cond_vocabs=(n_semantic, MELODY_VOCAB) if melody else (n_semantic,), cond_ratio=2,
                           max_steps=CODEC_FRAMES + 3, cond_dropout=0.67, **common)
    if name == "fine":
        return StageConfig(name=name, n_codebooks=4, vocab=codec_size, cond_vocabs=(codec_size,) * 4, cond_ratio=1,
                           max_steps=CODEC_FRAMES + 3, **common)
    raise ValueError(f"unknown stage {name!r}: semantic, coarse or fine")


def noisy_melody(tokens: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Score melody tokens [B, T] -> what a pitch tracker might report: dropouts, shifted boundaries, octave-proof
    pitch-class slips, and a one-frame timing offset."""
    t = tokens.clone()
    B, T = t.shape
    shift = torch.randint(-1, 2, (B,), generator=g)
    t = torch.stack([row.roll(int(s)) for row, s in zip(t, shift)])
    drop = torch.rand(B, T, generator=g) < 0.04
    drop |= drop.roll(1, 1)  # dropouts come in runs of two or more frames
    t[drop] = 0
    slip = (torch.rand(B, T, generator=g) < 0.02) & (t > 0)
    t[slip] = (t[slip] - 1 + torch.randint(1, 12, (int(slip.sum()),), generator=g)) % 12 + 1
    return t


def make_batch(cfg: StageConfig, tok: dict, idx: torch.Tensor, g: torch.Generator, train: bool = True,
               late_max: int = LATE_MAX) -> dict:
    """Clips ``idx`` of a token set (``engine.train.tokenize.load``) -> {"inputs", "targets", "prefix", "cond"}.

    In training, half of the clips start up to ``late_max`` 25 Hz frames late (the tail is padded and not scored),
    so positions 0.. also see mid-piece material, as in sliding-window generation, whose later windows put the
    last 5 s of the previous one (125 frames) at positions 0.."""
    B = len(idx)
    text_pick = torch.randint(0, tok["mulan_text"].shape[1], (B,), generator=g)
    prefix = tok["mulan_audio"][idx].clone()
    null = torch.zeros(B, dtype=torch.bool)
    if train:
        use_text = torch.rand(B, generator=g) < P_TEXT
        prefix[use_text] = tok["mulan_text"][idx, text_pick][use_text]
        null = torch.rand(B, generator=g) < P_NULL_PREFIX
        prefix[null] = cfg.prefix_vocab
    def melody() -> torch.Tensor:
        mel = noisy_melody(tok["melody"][idx], g) if train else tok["melody"][idx]
        if train:
            mel[torch.rand(B, generator=g) < P_NO_MELODY] = MELODY_VOCAB
        return mel

    if cfg.name == "semantic":
        out = tok["semantic"][idx][:, None]  # [B, 1, 250]
        streams = [melody()]
        if len(cfg.cond_vocabs) > 1:  # a stage trained before the beat grid has the melody stream only
            beat = torch.stack([beat_grid(float(tok["tempo"][i]), out.shape[-1]) for i in idx.tolist()])
            if train:
                beat[torch.rand(B, generator=g) < P_NO_BEAT] = BEAT_VOCAB
            streams.append(beat)
        cond, ratio = torch.stack(streams, 1), 1
    elif cfg.name == "coarse":
        out, cond, ratio = tok["codec"][idx, :4], tok["semantic"][idx][:, None], 2
        if len(cfg.cond_vocabs) > 1:
            cond = torch.cat([cond, melody()[:, None]], 1)
    else:
        out, cond, ratio = tok["codec"][idx, 4:8], tok["codec"][idx, :4], 1
    if train and cfg.cond_dropout:
        cond = cond.clone()
        cond[null & (torch.rand(B, generator=g) < cfg.cond_dropout)] = torch.tensor(cfg.cond_vocabs)[:, None]
    if train:  # late starts: shift left, pad the tail with the start/pad id (targets) and 'absent' (conditioning)
        late = torch.where(torch.rand(B, generator=g) < 0.5, torch.randint(0, late_max + 1, (B,), generator=g), 0)
        out = torch.stack([o.roll(-int(s) * ratio, -1) for o, s in zip(out, late)])
        cond = torch.stack([c.roll(-int(s), -1) for c, s in zip(cond, late)])
        for b, s in enumerate(late.tolist()):
            if s:
                out[b, :, -s * ratio:] = cfg.vocab
                cond[b, :, -s:] = torch.tensor(cfg.cond_vocabs)[:, None]
    targets = patterns.delay(out, cfg.vocab)
    # codes that follow a padded tail are pads too (delay layout of a shorter clip)
    return {"inputs": shift_right(targets, cfg.vocab), "targets": targets, "prefix": prefix, "cond": cond}


@torch.no_grad()
def self_feed(model, batch: dict, share: float, g: torch.Generator) -> dict:
    """Parallel scheduled sampling (Duckworth et al., 2019): a ``share`` of the real tokens in ``batch``'s inputs
    replaced by the model's own draws for them (one teacher-forced pass, sampled at temperature 1), the targets
    left as they are. At generation every input is the model's own draw; trained only on real ones, a stage never
    learns to recover from its own mistakes. Pads (start, late-start tail, delay triangles) are never replaced."""
    if share <= 0:
        return batch
    was_training = model.training
    model.eval()
    logits = model(batch["inputs"], batch["prefix"], batch["cond"])  # [B, K, S, V]
    model.train(was_training)
    B, K, S, V = logits.shape
    drawn = torch.multinomial(torch.softmax(logits.float().reshape(-1, V), -1), 1, generator=g).reshape(B, K, S)
    targets = batch["targets"]
    swap = (torch.rand(targets.shape, generator=g) < share) & (targets != model.cfg.vocab)
    return {**batch, "inputs": shift_right(torch.where(swap, drawn, targets), model.cfg.vocab)}
