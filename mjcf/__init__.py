"""MJCF models shipped with dex4d-jax; ROOT_PATH points at this folder."""
