"""write_gif: frames round-trip through a real GIF file; bad frames are refused."""

import imageio.v3 as iio
import numpy as np
import pytest

from mbrl_sam.evaluation.video import write_gif


def test_gif_round_trips_frame_count_size_and_colours(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    frames = [np.full((24, 32, 3), c, dtype=np.uint8) for c in colours]
    path = write_gif(frames, tmp_path / "sub" / "clip.gif", fps=20)
    back = iio.imread(path, index=None)
    assert back.shape[:3] == (4, 24, 32)
    # Flat primaries survive GIF's 256-colour palette exactly.
    np.testing.assert_array_equal(back[..., :3], np.stack(frames))
    meta = iio.immeta(path, index=0)
    assert meta["duration"] == pytest.approx(50, abs=10)  # 20 fps; GIF keeps 1/100 s


def test_bad_frames_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_gif([], tmp_path / "a.gif")
    mixed = [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        write_gif(mixed, tmp_path / "b.gif")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        write_gif([np.zeros((8, 8), np.uint8)], tmp_path / "c.gif")
