"""Write an evaluation episode's frames as an animated GIF (imageio's Pillow writer, no ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_gif(frames: list[np.ndarray], path: Path, fps: float = 30.0) -> Path:
    """Save (H, W, 3) uint8 frames as a looping GIF at `fps`; return the path."""
    import imageio.v3 as iio

    if not frames:
        raise ValueError("no frames to write")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[-1] != 3:
        raise ValueError(f"frames must share one (H, W, 3) shape, got {sorted(shapes)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # GIF stores frame delays in hundredths of a second; Pillow takes milliseconds.
    iio.imwrite(path, np.stack(frames).astype(np.uint8), duration=1000.0 / fps, loop=0)
    return path
