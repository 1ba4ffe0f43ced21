"""Decoder-only transformer stages, their delay pattern, sampling."""
