"""Writes the shapes data set to disk in the layout seglayers reads.

    python examples/write_shapes_folder.py data/shapes --num-samples 200

makes

    data/shapes/images/0000.jpg ...   RGB images
    data/shapes/masks/0000.png ...    palette-mode PNGs: pixel value = class id,
                                      shown in colour by image viewers

and then reads it back with `segmentation_dataset_from_directory`, the way a
training script would.
"""

import argparse
import os

import numpy as np
from PIL import Image

import seglayers
from seglayers.datasets import shapes


def write(directory, num_samples, image_size, seed):
    images, masks = shapes.load_data(num_samples, image_size, seed=seed)
    os.makedirs(os.path.join(directory, "images"), exist_ok=True)
    os.makedirs(os.path.join(directory, "masks"), exist_ok=True)
    colours = [0, 0, 0, 230, 25, 75, 60, 180, 75, 0, 130, 200]
    for i, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image.astype(np.uint8)).save(
            os.path.join(directory, "images", f"{i:04d}.jpg"), quality=95
        )
        png = Image.fromarray(mask[..., 0].astype(np.uint8), mode="P")
        png.putpalette(colours + [0, 0, 0] * (256 - len(colours) // 3))
        png.save(os.path.join(directory, "masks", f"{i:04d}.png"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--image-size", type=int, nargs=2, default=(128, 128))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write(args.directory, args.num_samples, tuple(args.image_size), args.seed)
    train, val = seglayers.segmentation_dataset_from_directory(
        args.directory,
        image_size=tuple(args.image_size),
        num_classes=len(shapes.CLASS_NAMES),
        validation_split=0.2,
        subset="both",
        seed=args.seed,
    )
    images, masks = next(iter(train))
    print(
        f"Wrote {args.num_samples} pairs to {args.directory}; read back batches "
        f"of {tuple(images.shape)} images and {tuple(masks.shape)} masks "
        f"(class ids {sorted(np.unique(masks.numpy()).tolist())})."
    )


if __name__ == "__main__":
    main()
