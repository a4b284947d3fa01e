"""dex4d-jax: a JAX/MJX reimplementation of Dex4D (arXiv 2602.15828)."""

__version__ = "0.1.0"
