"""Pictures for the pages: uint8 tensors -> RGB arrays or PIL images (no Streamlit here).

A uint8 H x W tensor is a grey picture, 3 x H x W an RGB one (colour folder datasets).
"""
from __future__ import annotations

import torch
from PIL import Image


def picture_tiles(images: torch.Tensor, scale: int = 3, marked: torch.Tensor | None = None) -> list:
    """uint8 images (N x height x width, or N x 3 x height x width in colour) -> RGB arrays
    upscaled with nearest neighbour (crisp pixels).

    Images where `marked` is True get a red border (wrong predictions).
    """
    images = images.to(torch.uint8)
    tiles = images.unsqueeze(-1) if images.ndim == 3 else images.permute(0, 2, 3, 1)  # N x H x W x channels
    rgb = tiles.repeat_interleave(scale, 1).repeat_interleave(scale, 2).expand(-1, -1, -1, 3).contiguous()
    if marked is not None and bool(marked.any()):
        red = torch.tensor([230, 40, 40], dtype=torch.uint8)
        edge = max(2, scale)
        rows = rgb[marked.bool()]
        rows[:, :edge], rows[:, -edge:], rows[:, :, :edge], rows[:, :, -edge:] = red, red, red, red
        rgb[marked.bool()] = rows
    return list(rgb.numpy())


def picture(image: torch.Tensor, scale: int = 1) -> Image.Image:
    """One uint8 picture (H x W grey, or 3 x H x W / 1 x H x W) -> a PIL image upscaled `scale` times, crisp."""
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    tile = picture_tiles(image.unsqueeze(0), scale)[0]
    return Image.fromarray(tile[..., 0] if image.ndim == 2 else tile, "L" if image.ndim == 2 else "RGB")
