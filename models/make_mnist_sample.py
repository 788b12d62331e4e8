"""Write crossmap/data/mnist_sample.npz: 300 MNIST test images (30 per class, drawn with seed 0).

Usage: python models/make_mnist_sample.py [--data-dir DIR] [--per-class 30] [--seed 0]
The file holds uint8 ``images`` (n, 28, 28), uint8 ``labels`` (n,) and int64 ``indices`` (n,),
the positions of the images in the MNIST test files. The order is shuffled (seeded), so any
prefix of the sample mixes the classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from crossmap.datasets import FILES, _locate, default_data_dir, read_idx


def main() -> None:
    """Draw the stratified sample and write it next to the package sources."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST directory (default: crossmap's lookup)")
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "crossmap" / "data" / "mnist_sample.npz"))
    args = parser.parse_args()
    directory = Path(args.data_dir) if args.data_dir else default_data_dir()
    images = read_idx(_locate(directory, FILES["test"][0], download=True))
    labels = read_idx(_locate(directory, FILES["test"][1], download=True))
    rng = np.random.default_rng(args.seed)
    picks = [rng.choice(np.flatnonzero(labels == c), size=args.per_class, replace=False) for c in range(10)]
    indices = rng.permutation(np.concatenate(picks))
    np.savez_compressed(args.out, images=images[indices], labels=labels[indices], indices=indices.astype(np.int64))
    print(f"wrote {args.out}: {len(indices)} images, classes {np.bincount(labels[indices]).tolist()}")


if __name__ == "__main__":
    main()
