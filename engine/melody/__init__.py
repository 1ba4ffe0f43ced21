"""Melody conditioning: hum / whistle / song -> 25 Hz pitch track -> octave-folded melody tokens."""
from .track import FRAME_RATE, VOCAB, MelodyError, MelodyTrack, melody_from_audio, tokens_from_midi

__all__ = ["FRAME_RATE", "VOCAB", "MelodyError", "MelodyTrack", "melody_from_audio", "tokens_from_midi"]
