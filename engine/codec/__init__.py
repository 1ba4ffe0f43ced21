"""Neural audio codec: 24 kHz mono <-> 50 Hz frames of 8 x 1024 RVQ codes."""
from .model import Codec, CodecConfig, CodecOutput

DEFAULT_DIR = "assets/codec"

__all__ = ["DEFAULT_DIR", "Codec", "CodecConfig", "CodecOutput"]
