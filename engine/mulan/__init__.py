"""MuLan-style joint text/music embedding and its 12 conditioning tokens."""
from .model import MuLan, MuLanConfig
from .text import PromptError, clean_prompt

DEFAULT_DIR = "assets/mulan"

__all__ = ["DEFAULT_DIR", "MuLan", "MuLanConfig", "PromptError", "clean_prompt"]
