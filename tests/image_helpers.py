"""Small image data and networks shared by the image tests (imported as ``image_helpers``: tests/ is on the path)."""

import numpy as np

#: a UNet small enough for CPU tests
TINY_UNET = ["--preset", "none", "--channels", "8", "--channel-mult", "1,2", "--num-res-blocks", "1"]


def write_folder(path, n=24, size=8, mode="L", seed=0):
    """A folder of n synthetic PNGs: bright squares at random places."""
    from PIL import Image

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        a = np.zeros((size, size), np.uint8)
        r, c = rng.integers(0, size - 3, 2)
        a[r : r + 3, c : c + 3] = 255
        im = Image.fromarray(a if mode == "L" else np.stack([a, a // 2, 255 - a], -1))
        im.save(path / f"img_{i:03d}.png")
    return path
