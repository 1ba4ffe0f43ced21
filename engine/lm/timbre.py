"""Which lead instrument family and which drums each coarse code belongs to: a timbre profile that steers the coarse
stage towards a named lead ("led by a cello") or away from drums ("no drums").

The coarse stage decides what is heard, and its codes carry the timbre: summing this table over a validation
clip's first two code levels names its lead family on ~56% of clips (11 families; the commonest is 20%). The table
is the pointwise mutual information of code and label over the tokenised train split (``engine.semantic.keys.pmi``:
add-one smoothed, clipped), per code level; its columns are the lead families, then drums / no drums. At generation
a named lead adds ``TIMBRE_BIAS`` times its family's column to the coarse logits, "no drums" the no-drums column
(classifier guidance with a per-token classifier, as a named key pulls the semantic ids).

Drums are decided higher up too: a "rock song" prompt brings them whatever the codes are pulled towards (9 in 10
rock clips of the corpus have them). So the profile also holds MuLan's no-drums direction: within each style that
has clips with and without drums, the mean audio embedding of those without minus those with, averaged over the
styles; "no drums" moves the prompt's embedding by ``NO_DRUMS_SHIFT`` times it before its prefix tokens are made.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from ..data.instruments import INSTRUMENTS
from ..semantic.keys import pmi
from ..weights import load_weights, save_weights

FILE = "timbre.safetensors"
LEVELS = 2  # code levels profiled: the later residual levels added nothing to the lead's naive-Bayes accuracy


def family_of(name: str | None) -> str | None:
    """The family of an instrument the corpus names ("cello" -> "strings"); None when unknown."""
    for ins in INSTRUMENTS.values():
        if name is not None and (ins.name == name or name in ins.aliases):
            return ins.family
    return None


@dataclass
class TimbreProfile:
    table: torch.Tensor  # [LEVELS, vocab, families + 2]: the families' columns, then drums, no drums
    families: tuple[str, ...]  # the lead families of the train split, in column order
    no_drums: torch.Tensor | None = None  # [dim] in MuLan's space; None when fitted on another MuLan's tokens

    def shifted(self, emb: torch.Tensor, drums: bool | None, scale: float) -> torch.Tensor:
        """A prompt's MuLan embedding [dim], moved away from drums when they are refused (re-normalised)."""
        if drums is not False or self.no_drums is None:
            return emb
        out = emb + scale * self.no_drums.to(emb.dtype)
        return out / out.norm().clamp_min(1e-8)

    def columns(self, lead: str | None, drums: bool | None) -> list[int]:
        """The columns a request pulls towards: the lead's family (when the profile knows it), and no drums when
        drums are refused."""
        fam = family_of(lead)
        cols = [self.families.index(fam)] if fam in self.families else []
        return cols + ([len(self.families) + 1] if drums is False else [])

    def bias(self, lead: str | None, drums: bool | None, n_codebooks: int, scale: float) -> torch.Tensor | None:
        """[n_codebooks, vocab] to add to the coarse logits (levels beyond the profile's get none); None when the
        request names neither."""
        cols = self.columns(lead, drums)
        if not cols:
            return None
        out = torch.zeros(n_codebooks, self.table.shape[1])
        out[: self.table.shape[0]] = scale * self.table[:, :, cols].float().sum(-1)
        return out


def no_drums_direction(emb: torch.Tensor, drums: torch.Tensor, styles: list[str]) -> torch.Tensor:
    """emb [N, dim] clips' MuLan audio embeddings, drums [N] bool, styles [N] -> [dim]: the mean over styles with
    both (at least 4 clips each) of the mean embedding without drums minus the mean with them."""
    drums = drums.bool()
    diffs = []
    for style in sorted(set(styles)):
        of = torch.tensor([s == style for s in styles])
        if (of & drums).sum() >= 4 and (of & ~drums).sum() >= 4:
            diffs.append(emb[of & ~drums].float().mean(0) - emb[of & drums].float().mean(0))
    if not diffs:
        raise ValueError("no style has clips both with and without drums")
    return torch.stack(diffs).mean(0)


def fit_timbre_profile(codes: torch.Tensor, leads: torch.Tensor, drums: torch.Tensor, vocab: int,
                       no_drums: torch.Tensor | None = None) -> TimbreProfile:
    """codes [N, >=LEVELS, T] coarse codes of N clips, leads [N] their lead's GM program, drums [N] bool;
    ``no_drums``: the MuLan direction (``no_drums_direction``)."""
    names = [INSTRUMENTS[int(p)].family for p in leads]
    families = tuple(sorted(set(names)))
    fam = torch.tensor([families.index(f) for f in names])
    drums = drums.bool()
    tables = []
    for lv in range(LEVELS):
        hist = torch.stack([torch.bincount(row, minlength=vocab)[:vocab] for row in codes[:, lv].long()]).double()
        by_family = torch.zeros(vocab, len(families), dtype=torch.float64).index_add_(1, fam, hist.t())
        by_drums = torch.stack([hist[drums].sum(0), hist[~drums].sum(0)], 1)
        tables.append(torch.cat([pmi(by_family), pmi(by_drums)], 1))
    return TimbreProfile(torch.stack(tables), families, no_drums)


def save_timbre_profile(profile: TimbreProfile, directory: str | Path, codec_version: str,
                        mulan_version: str | None = None) -> Path:
    path = Path(directory) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)  # a rebuild fits it before the stages exist
    state = {"pmi": profile.table.half()}
    if profile.no_drums is not None:
        state["no_drums"] = profile.no_drums.half()
    save_weights(state, path, {"codec": codec_version, "mulan": mulan_version or "",
                               "families": ",".join(profile.families)})
    return path


def load_timbre_profile(directory: str | Path, codec_version: str, mulan_version: str) -> TimbreProfile | None:
    """The profile beside the coarse stage; None when there is none or it was fitted on another codec's codes (its
    MuLan direction is left out when fitted on another MuLan's tokens)."""
    path = Path(directory) / FILE
    if not path.exists():
        return None
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("codec") != codec_version:
        return None
    state = load_weights(path)
    return TimbreProfile(state["pmi"], tuple(meta["families"].split(",")),
                         state.get("no_drums") if meta.get("mulan") == mulan_version else None)
