"""Write crossmap/data/mnist_calibration.npz: 256 MNIST TRAINING images, the default calibration
set of float models that take 28 x 28 images (test images are for scoring only).

Usage: python models/make_calibration_sample.py [--data-dir DIR] [--count 256]
The images are positions 55,000.. of a seed-0 shuffle of the 60,000 training images: the held-out
tail that ``benchmarks/user_models.py`` does not train on. The file holds uint8 ``images``
(n, 28, 28), uint8 ``labels`` (n,) and int64 ``indices`` (n,), their positions in the MNIST
training files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from crossmap.datasets import FILES, _locate, default_data_dir, read_idx

HELD_OUT_START = 55000  # training images from here on (in the seed-0 shuffle) are held out


def main() -> None:
    """Draw the sample and write it next to the package sources."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST directory (default: crossmap's lookup)")
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "crossmap" / "data" /
                                             "mnist_calibration.npz"))
    args = parser.parse_args()
    directory = Path(args.data_dir) if args.data_dir else default_data_dir()
    images = read_idx(_locate(directory, FILES["train"][0], download=True))
    labels = read_idx(_locate(directory, FILES["train"][1], download=True))
    order = np.random.default_rng(0).permutation(len(labels))
    indices = order[HELD_OUT_START:HELD_OUT_START + args.count]
    np.savez_compressed(args.out, images=images[indices], labels=labels[indices], indices=indices.astype(np.int64))
    print(f"wrote {args.out}: {len(indices)} training images, classes {np.bincount(labels[indices]).tolist()}")


if __name__ == "__main__":
    main()
