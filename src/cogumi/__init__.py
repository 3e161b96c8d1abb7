"""Cogumi: distill, compress, specialise, route and serve an open LLM, measured at every step."""

__version__ = "0.1.0"
