"""Does a candidate fine stage render real music closer? ``python -m engine.eval.bench finepair --tokens DIR
--corpus DIR --b DIR [--clips 48]``.

The fine stage turns coarse codes (levels 1-4) into levels 5-8, and ``bench compare``'s measures (MuLan agreement,
pitch, tempo) hardly see what those levels carry. Here, for the validation clips of a token folder (codes of the
encoder the stages were trained on), each fine stage samples levels 5-8 from the clip's real levels 1-4 and its short
caption's MuLan text tokens, as at generation (``Settings.params("fine")``, the same seed for both); the codec
decodes all eight levels (with the clip's semantic ids), and the log-mel distance to the real clip is taken
(``engine.eval.metrics.mel_distance``), paired over clips. Beside it, the same decode with the real levels 5-8 (what
a perfect fine stage would reach) and with levels 1-4 alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..codec import Codec
from ..codec.model import frame_ids
from ..data.dataset import CorpusDataset
from ..lm.model import StageLM
from ..lm.sampler import StageSampler
from ..mulan.model import MuLanConfig
from ..settings import Settings
from .metrics import mel_distance


def valid_tokens(tokens: Path, assets: Path) -> dict:
    """The token folder's validation clips, as ``engine.train.tokenize`` wrote them for the models in ``assets``."""
    def version(part: str) -> str:
        return json.loads((assets / part / f"{part}.json").read_text())["version"]
    key = MuLanConfig.from_dict(json.loads((assets / "mulan" / "mulan.json").read_text())).token_key
    files = {"codec": f"codec-valid-{version('codec')}.pt", "semantic": f"semantic-valid-{version('semantic')}.pt",
             "mulan": f"mulan-valid-{key}.pt"}
    missing = [f for f in files.values() if not (tokens / f).exists()]
    if missing:
        raise SystemExit(f"finepair: {tokens} lacks {missing[0]} (python -m engine.train.tokenize)")
    c, s, m = (torch.load(tokens / f, weights_only=False) for f in files.values())
    if not c["ids"] == s["ids"] == m["ids"]:
        raise SystemExit(f"finepair: the token files in {tokens} are of different clips")
    return {"ids": c["ids"], "codec": c["codes"].long(), "semantic": s["tokens"].long(), "mulan_text": m["text"].long()}


@torch.inference_mode()
def run(tokens: Path, corpus: Path, a: Path, b: Path, n: int = 48, progress=None) -> dict:
    codec = Codec.load(a / "codec")
    n_semantic = json.loads((a / "semantic" / "semantic.json").read_text())["n_tokens"]
    tok = valid_tokens(tokens, a)
    ds = CorpusDataset(corpus, "valid")
    where = {c: i for i, c in enumerate(ds.ids)}
    stages = {side: StageLM.load(folder / "stages", "fine") for side, folder in (("a", a), ("b", b))}
    params = Settings().params("fine", cool=True)
    picks = list(range(0, len(tok["ids"]), max(1, len(tok["ids"]) // n)))[:n]
    rows = []
    for i in picks:
        real = torch.from_numpy(np.pad(ds[where[tok["ids"][i]]].audio, (0, 240_000))[:240_000])[None]
        codes = tok["codec"][i]  # [8, 500]
        ids = frame_ids(tok["semantic"][i][None], codes.shape[-1], n_semantic)
        prefix = tok["mulan_text"][i, min(1, tok["mulan_text"].shape[1] - 1)][None]

        def mel(levels: torch.Tensor) -> float:
            audio = codec.decode(levels[None], ids if codec.conditioned else None)[:, codec.delay:]
            return float(mel_distance(real[:, :audio.shape[-1]], audio))
        row = {"id": tok["ids"][i], "real_fine": mel(codes), "coarse_only": mel(codes[:4])}
        for side, st in stages.items():
            s = StageSampler(st, prefix, codes[None, :4], codes.shape[-1], params, torch.Generator().manual_seed(i))
            while not s.done:
                s.advance()
            row[side] = mel(torch.cat([codes[:4], s.codes()]))
        rows.append(row)
        if progress:
            progress()
    d = np.array([r["b"] - r["a"] for r in rows])
    summary = {k: float(np.mean([r[k] for r in rows])) for k in ("a", "b", "real_fine", "coarse_only")}
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    summary.update(clips=len(rows), diff=float(d.mean()), se=se,
                   b_better=float(np.mean(d < 0)), assets=[str(a), str(b)])
    return {"summary": summary, "rows": rows}


def markdown(r: dict, machine: str, day: str) -> str:
    s = r["summary"]
    return "\n".join([
        f"## Fine stage, paired — {day}, {machine}", "",
        f"`{s['assets'][0]}` (a) vs `{s['assets'][1]}` (b): levels 5-8 sampled from {s['clips']} validation clips' real "
        "levels 1-4, decoded, log-mel distance to the real clip (lower is better).", "",
        "| a | b | b - a, paired | b closer | real levels 5-8 | levels 1-4 alone |", "| --- | --- | --- | --- | --- | --- |",
        f"| {s['a']:.4f} | {s['b']:.4f} | {s['diff']:+.4f} ± {s['se']:.4f} | {s['b_better']:.0%} | "
        f"{s['real_fine']:.4f} | {s['coarse_only']:.4f} |", ""])
