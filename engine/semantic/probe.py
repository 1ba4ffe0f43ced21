"""Probes of what the semantic tokens carry, reported in the model card.

- ``pitch_class_probe``: each token is mapped to the melody pitch class it most often co-occurs with on the train
  split; accuracy of that lookup on the test split's voiced frames, against the majority-class baseline (chance).
- ``arrangement_probe``: ``n`` test clips are rendered again as the same composition excerpt at the same tempo and key
  but in another style with other instruments; each re-arrangement's token sequence is compared, frame by frame
  (distance between the tokens' centroids), with all ``n`` original clips. Reported: how often the nearest original
  is its own composition (chance 1/n), and the mean distance to its own vs to the others.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch


def pitch_class_probe(train_tokens, train_pc, test_tokens, test_pc, n_tokens: int | None = None) -> dict:
    n_tokens = n_tokens or int(max(train_tokens.max(), test_tokens.max())) + 1
    table = torch.zeros(n_tokens, 13)
    table.index_put_((train_tokens.reshape(-1), train_pc.reshape(-1)), torch.ones(train_pc.numel()), accumulate=True)
    lookup = table[:, 1:].argmax(1) + 1  # the voiced pitch class each token means
    voiced = test_pc > 0
    acc = float((lookup[test_tokens][voiced] == test_pc[voiced]).float().mean())
    majority = float(torch.bincount(test_pc[voiced], minlength=13).max() / voiced.sum())
    return {"probe_pitch_class": acc, "probe_pitch_class_chance": majority}


def _rearranged(records: list[dict], data: Path) -> list[np.ndarray]:
    """Render each record's composition excerpt again in another style (same tempo, key, mode, start bar)."""
    from ..data.arrange import arrange
    from ..data.melodies import load_melodies
    from ..data.plan import MelodyPool, pick_program, plan_clip
    from ..data.render import Renderer
    from ..data.styles import STYLES

    pool = MelodyPool(load_melodies(Path("runs/cache")).melodies)
    renderer = Renderer()
    out = []
    try:
        for r in records:
            spec, melody = plan_clip(r["index"], r["plan"]["seed"], pool, r["duration"])
            assert spec.id == r["id"], f"{r['id']}: the corpus was built from other melodies"
            rng = np.random.default_rng([r["index"], 99])
            others = [s for s in sorted(STYLES) if s != spec.style and STYLES[s].comp != ("satb",)]
            st = STYLES[others[int(rng.integers(len(others)))]]
            lead = pick_program(rng, st.lead, {spec.lead})
            harmony = pick_program(rng, st.harmony, {lead, spec.harmony})
            spec2 = dataclasses.replace(spec, style=st.name, lead=lead, harmony=harmony,
                                        bass=pick_program(rng, st.bass, {lead, harmony}) if st.bass else None,
                                        drums=pick_program(rng, st.drums, set()) if st.drums else None, pad=None)
            out.append(renderer.render(arrange(melody, spec2)))
    finally:
        renderer.close()
    return out


@torch.inference_mode()
def arrangement_probe(model, data, n: int = 40) -> dict:
    from ..data.dataset import CorpusDataset
    ds = CorpusDataset(data, "test")
    step = max(1, len(ds) // n)
    picks = list(range(0, len(ds), step))[:n]
    records = [ds.records[i] for i in picks]
    orig = torch.stack([torch.from_numpy(ds[i].audio[:240_000]) for i in picks])
    alt = _rearranged(records, Path(data))
    alt = torch.stack([torch.from_numpy(np.pad(a, (0, max(0, 240_000 - len(a))))[:240_000]) for a in alt])
    c = model.centroids
    to, ta = model.encode(orig), model.encode(alt)  # [n, T]
    d = torch.stack([(c[ta[i]][None] - c[to]).norm(dim=-1).mean(-1) for i in range(len(picks))])  # [alt, orig]
    own = d.diag()
    others = (d.sum(1) - own) / (len(picks) - 1)
    return {"probe_arrangement_top1": float((d.argmin(1) == torch.arange(len(picks))).float().mean()),
            "probe_arrangement_chance": 1 / len(picks),
            "probe_arrangement_own_distance": float(own.mean()), "probe_arrangement_other_distance": float(others.mean()),
            "probe_arrangement_token_agreement": float((to == ta).float().mean())}
