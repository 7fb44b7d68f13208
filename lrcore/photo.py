"""One photo -> the model's input picture, for folder imports and the Predict page alike.

Tutorial 002 prepares its bees and ants with torchvision's `Resize(side)` + `CenterCrop(side)`:
the shorter side is scaled to `side` (keeping the aspect ratio) and the middle square is kept.
The same two functions do it here, on the PIL image, so a photo uploaded for prediction is
prepared exactly as the folder's images were.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision.transforms.v2 import functional as TF

from .preprocess import SIXTEEN_BIT_GREY, _eight_bit, _eight_bit_grey, load_image_bytes

IMAGE_SIDES: tuple[int, ...] = (28, 32, 48, 64)
DEFAULT_SIDE: int = 32  # 3 x 32 x 32 = 3,072 inputs: trains in seconds on 2 cores
PAPER = (255, 255, 255)  # transparent pixels are shown on white, as a browser shows them


def photo_tensor(image: Image.Image, side: int, colour: bool) -> torch.Tensor:
    """uint8 side x side (colour=False) or 3 x side x side: EXIF rotation applied, transparency
    composited on white, shorter side resized to `side`, centre-cropped (torchvision's Resize+CenterCrop)."""
    return _to_tensor(ImageOps.exif_transpose(image), side, colour)


def decode_photo(data: bytes, side: int, colour: bool) -> torch.Tensor:
    """Bytes of a JPEG/PNG (lrcore.preprocess.load_image_bytes: size/bomb checks) -> photo_tensor; raises
    lrcore.preprocess.ImageError with a clear message."""
    # load_image_bytes has applied the EXIF rotation already; its result still carries the tag,
    # so photo_tensor's exif_transpose would turn the picture a second time.
    return _to_tensor(load_image_bytes(data), side, colour)


def _to_tensor(image: Image.Image, side: int, colour: bool) -> torch.Tensor:
    if not 1 <= side <= 1024:
        raise ValueError(f"side must be between 1 and 1024 px, got {side}")
    image = _opaque(image)
    image = image.convert("RGB" if colour else "L")
    image = TF.resize(image, [side], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    image = TF.center_crop(image, [side, side])
    array = np.asarray(image, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy())
    return tensor.permute(2, 0, 1).contiguous() if colour else tensor


def _opaque(image: Image.Image) -> Image.Image:
    """8-bit L or RGB: 16-bit grey scaled, palette and other modes converted, alpha composited on white."""
    image = _eight_bit_grey(image) if image.mode in SIXTEEN_BIT_GREY else _eight_bit(image)
    if image.mode != "RGBA":
        return image
    paper = Image.new("RGBA", image.size, PAPER + (255,))
    return Image.alpha_composite(paper, image).convert("RGB")
