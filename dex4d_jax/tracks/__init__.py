"""From video to 3D point tracks: formats, tracking, lifting, cleaning (numpy/OpenCV, no JAX).

This package runs on the robot computer, so it imports only numpy, OpenCV and imageio. MuJoCo
is imported lazily by the synthetic-scene renderer (`dex4d_jax.tracks.synthetic`) and the
model adapters import torch lazily. See docs/tracks.md.
"""
