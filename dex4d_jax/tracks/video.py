"""Reading and writing video frames (imageio + its bundled ffmpeg), and grayscale conversion."""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import imageio.v2 as imageio
import numpy as np


def to_gray(frame: np.ndarray) -> np.ndarray:
    """[H, W, 3] RGB (or [H, W, 4] RGBA, or [H, W] gray) uint8 -> [H, W] uint8 gray."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        gray = frame
    elif frame.ndim == 3 and frame.shape[2] in (3, 4):
        gray = cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2GRAY)
    else:
        raise ValueError(f"a frame must be [H, W] gray or [H, W, 3] RGB, got {list(frame.shape)}")
    if gray.dtype != np.uint8:
        gray = np.clip(gray, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(gray)


def iter_frames(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yields the RGB frames [H, W, 3] uint8 of a video file, decoding one at a time.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file cannot be decoded as video.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file not found: {path}")
    try:
        reader = imageio.get_reader(path, format="FFMPEG")
    except Exception as err:  # imageio raises several types for undecodable files
        raise ValueError(f"{path}: cannot open as a video ({err})") from err
    try:
        for index, frame in enumerate(reader):
            if max_frames is not None and index >= max_frames:
                break
            yield np.asarray(frame)[..., :3]
    finally:
        reader.close()


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Reads a whole video.

    Returns:
        Tuple of frames [T, H, W, 3] uint8 RGB and the frame rate (frames per second).
    """
    frames = list(iter_frames(path, max_frames))
    if not frames:
        raise ValueError(f"{os.fspath(path)}: the video has no frames")
    return np.stack(frames), video_fps(path)


def video_fps(path: str | os.PathLike) -> float:
    """The frame rate stored in a video file (0.0 when unknown)."""
    reader = imageio.get_reader(os.fspath(path), format="FFMPEG")
    try:
        return float(reader.get_meta_data().get("fps", 0.0))
    finally:
        reader.close()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 30.0,
                quality: int = 10) -> None:
    """Writes frames [T, H, W, 3] uint8 RGB as an H.264 MP4 (H and W should be even).

    Args:
        path: output file.
        frames: [T, H, W, 3] uint8.
        fps: frame rate.
        quality: imageio's 0-10 quality (10 = highest, nearly lossless for textures).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be [T, H, W, 3] uint8, got {list(frames.shape)} "
                         f"{frames.dtype}")
    # macro_block_size=1 keeps the exact size (imageio would otherwise pad to multiples of 16).
    with imageio.get_writer(os.fspath(path), format="FFMPEG", fps=fps, quality=quality,
                            macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(frame)
