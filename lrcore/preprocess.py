"""Turn a canvas drawing or an uploaded picture into a 28x28 MNIST-style digit.

MNIST's recipe (LeCun et al.): crop the ink, scale it anti-aliased so the longer side
is 20 px keeping the aspect ratio, then place it in a 28x28 frame so that its
intensity-weighted centre of mass sits at the centre. The model only ever saw digits
prepared that way, so a drawing must go through the same steps or predictions are
poor. numpy does the per-pixel work and PIL only the resize, which keeps a
280x280 canvas well under a few milliseconds.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

SIZE = 28  # output frame, as MNIST
BOX = 20  # the ink's longer side after scaling, as MNIST
CENTRE = 14.0  # MNIST's mean centre of mass in pixel-index coordinates (measured: 13.99, 14.00)
EMPTY_PEAK = 32.0  # strongest ink (0..255, paper level removed) below this = nothing drawn
BBOX_FRACTION = 0.1  # a pixel belongs to the digit when above 10% of the strongest ink...
HAZE = EMPTY_PEAK / 2  # ...and above this absolute level; weaker pixels are noise, set to 0
FRAME = 2  # border width (px) that tells paper colour and paper level
MAX_BYTES = 5 * 1024 * 1024
MAX_SIDE = 4096
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's convert("L")
# Deskewing shears at most 45 degrees: a blob or a flat dash has an ill-defined slant.
MAX_SHEAR = 1.0
DESKEW_CHUNK = 4096  # images per step: bounds the sampling grid to ~25 MB
EMPTY_MESSAGE = "No digit found: draw a digit (white on black) or upload a clearer image."

ImageInput = Union[np.ndarray, Image.Image, bytes, bytearray, memoryview, torch.Tensor]


class ImageError(ValueError):
    """The input can't be used as a digit image; the message says why and what is allowed."""


@dataclass(frozen=True, eq=False)
class PreprocessResult:
    """`image` is uint8 28x28 with bright ink on black (like MNIST), or None when `empty`.

    `bbox` is (left, top, right, bottom) of the ink in the input, right/bottom
    exclusive like PIL's crop box; `inverted` says dark ink on light paper was flipped.
    """

    image: torch.Tensor | None
    empty: bool
    inverted: bool
    bbox: tuple[int, int, int, int] | None
    message: str


def load_image_bytes(data: bytes, max_bytes: int = MAX_BYTES) -> Image.Image:
    """Decode an uploaded PNG or JPEG, refusing oversized, corrupt or huge images.

    Phone photos carry their rotation in EXIF, so it is applied here.
    """
    data = bytes(data)
    if len(data) > max_bytes:
        raise ImageError(f"file is {len(data) / 2**20:.1f} MB; the limit is "
                         f"{max_bytes / 2**20:g} MB")
    # Check the magic bytes ourselves: PIL would happily open GIF, BMP, TIFF, ...
    if not (data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8\xff")):
        raise ImageError("not a PNG or JPEG image")
    try:
        image = Image.open(io.BytesIO(data))
        # Check the header's size before decoding, so a decompression bomb never expands.
        width, height = image.size
        if width > MAX_SIDE or height > MAX_SIDE or width < 1 or height < 1:
            raise ImageError(f"image is {width}x{height} px; at most {MAX_SIDE}x{MAX_SIDE} px "
                             "is allowed")
        image.load()
        return ImageOps.exif_transpose(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:  # PIL refuses giant headers inside open()
        raise ImageError(f"image is far too large; at most {MAX_SIDE}x{MAX_SIDE} px is allowed") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"not a PNG or JPEG image (the file is corrupt or truncated: {exc})") from exc


def preprocess_digit(image: ImageInput, invert: bool | None = None) -> PreprocessResult:
    """Crop, scale to 20 px and centre the digit in `image` as a 28x28 MNIST-style tensor.

    `image`: H x W (gray), H x W x 3 (RGB) or H x W x 4 (RGBA, e.g. the drawable
    canvas) uint8 array, a PIL image, or PNG/JPEG bytes. `invert`: True = dark ink on
    light paper, False = light ink on dark, None = decide from the border's colour.
    """
    lum, alpha = _luminance(image)
    ink, inverted = _ink(lum, alpha, invert)
    if ink is None:  # fully transparent: nothing was drawn
        return PreprocessResult(None, True, bool(inverted), None, EMPTY_MESSAGE)

    # Remove the paper level (grey paper in photos, JPEG haze) so it isn't ink. A bright
    # frame here means the caller forced polarity on an all-ink picture: keep it as ink.
    paper = float(np.median(_frame(ink)))
    if 0 < paper < 128:
        ink = np.clip(ink - paper, 0, None)
    peak = float(ink.max())
    # Judged on the strongest pixel, not on the pixel count, so one real dot still counts.
    if peak < EMPTY_PEAK:
        return PreprocessResult(None, True, inverted, None, EMPTY_MESSAGE)

    mask = ink > max(BBOX_FRACTION * peak, HAZE)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    # Haze inside the box would otherwise pull the centre of mass and get contrast-stretched.
    crop = np.where(ink[top:bottom, left:right] > HAZE, ink[top:bottom, left:right], 0)

    height, width = crop.shape
    scale = BOX / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    # Float ("F") resize keeps faint anti-aliased strokes; LANCZOS averages properly
    # when shrinking, BILINEAR avoids ringing when blowing up a tiny mark.
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR
    small = np.asarray(Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32))
                       .resize((new_w, new_h), resample), dtype=np.float32)
    small = np.clip(small, 0, None)  # LANCZOS undershoots next to strong edges
    total = float(small.sum())
    if total <= 0:
        return PreprocessResult(None, True, inverted, None, EMPTY_MESSAGE)

    # Put the centre of mass on (14, 14), the same as MNIST, but never push ink off the frame.
    com_y = float(small.sum(axis=1) @ np.arange(new_h, dtype=np.float32)) / total
    com_x = float(small.sum(axis=0) @ np.arange(new_w, dtype=np.float32)) / total
    y0 = min(max(round(CENTRE - com_y), 0), SIZE - new_h)
    x0 = min(max(round(CENTRE - com_x), 0), SIZE - new_w)
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[y0:y0 + new_h, x0:x0 + new_w] = small
    # MNIST strokes peak at 255; stretching makes thin pens and faint photos look the same.
    out *= 255.0 / float(out.max())
    digit = torch.from_numpy(np.rint(out).astype(np.uint8))

    message = f"Digit found ({right - left}x{bottom - top} px), scaled to {BOX} px and centred"
    if inverted:
        message += "; dark ink on light paper was inverted"
    return PreprocessResult(digit, False, inverted, (left, top, right, bottom), message + ".")


def to_model_input(image28: torch.Tensor) -> torch.Tensor:
    """uint8 28x28 digit -> float32 1x784 in 0..1 (the caller applies the model's normaliser)."""
    if image28.dtype != torch.uint8 or image28.numel() != SIZE * SIZE:
        raise ValueError(f"expected a uint8 {SIZE}x{SIZE} image, got {image28.dtype} "
                         f"with shape {tuple(image28.shape)}")
    return image28.reshape(1, SIZE * SIZE).to(torch.float32).div_(255.0)


def slant(images: torch.Tensor) -> torch.Tensor:
    """Per-image shear cov(x, y) / var(y) of the ink (0 = upright), for N x 28 x 28 (or 28 x 28) images.

    Rows grow downwards, so positive means the lower ink lies further right, as in "\\";
    images with no ink (or no height) have slant 0.
    """
    return _moments(images.reshape(-1, SIZE, SIZE).float())[2]


def deskew(images: torch.Tensor) -> torch.Tensor:
    """Moment-based deskewing (LeCun's MNIST table: 12% -> 8.4% error for a linear classifier).

    Each image is sheared horizontally so its ink's principal axis is vertical
    (alpha = cov(x, y) / var(y), capped at 45 degrees), with its centre of mass moved to
    the image centre (CENTRE, as MNIST's), resampled bilinearly. uint8 in (28 x 28,
    N x 28 x 28 or N x 784), uint8 out in the same shape; empty images stay empty. Batched
    and chunked: all 70,000 MNIST images take about 2 s on one CPU thread.
    """
    if images.dtype != torch.uint8 or images.numel() % (SIZE * SIZE):
        raise ValueError(f"expected uint8 {SIZE}x{SIZE} images, got {images.dtype} with shape {tuple(images.shape)}")
    batch = images.reshape(-1, SIZE, SIZE)
    out = torch.empty_like(batch)
    offsets = torch.arange(SIZE, dtype=torch.float32, device=images.device) - CENTRE
    scale = 2.0 / (SIZE - 1)  # pixel index -> grid_sample's -1..1 (align_corners=True)
    for start in range(0, len(batch), DESKEW_CHUNK):
        pixels = batch[start:start + DESKEW_CHUNK].float()
        cy, cx, alpha = _moments(pixels)
        n = len(pixels)
        # Output pixel (CENTRE + v, CENTRE + u) reads the input at (cy + v, cx + u + alpha * v):
        # a shear about the centre of mass, so ink along x = cx + alpha (y - cy) ends up vertical.
        in_y = (cy.view(n, 1, 1) + offsets.view(1, SIZE, 1)).expand(n, SIZE, SIZE)
        in_x = cx.view(n, 1, 1) + offsets.view(1, 1, SIZE) + alpha.view(n, 1, 1) * offsets.view(1, SIZE, 1)
        grid = torch.stack((in_x * scale - 1, in_y * scale - 1), dim=-1)
        sampled = F.grid_sample(pixels.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros",
                                align_corners=True)
        out[start:start + n] = sampled.squeeze(1).round_().clamp_(0, 255).to(torch.uint8)
    return out.reshape(images.shape)


def _moments(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre of mass (row, column) and slant of each float N x 28 x 28 image; empty ones: centre, 0."""
    coords = torch.arange(SIZE, dtype=pixels.dtype, device=pixels.device)
    rows, cols = pixels.sum(2), pixels.sum(1)  # ink per row, per column
    mass = rows.sum(1)
    empty = mass <= 0
    safe = torch.where(empty, torch.ones_like(mass), mass)
    cy = torch.where(empty, torch.full_like(mass, CENTRE), rows @ coords / safe)
    cx = torch.where(empty, torch.full_like(mass, CENTRE), cols @ coords / safe)
    dy = coords.view(1, SIZE) - cy[:, None]
    dx = coords.view(1, SIZE) - cx[:, None]
    var_y = (rows * dy * dy).sum(1) / safe
    cov = torch.einsum("nij,ni,nj->n", pixels, dy, dx) / safe
    # A flat dash has no height to shear along: leave it alone rather than divide by ~0.
    alpha = torch.where(var_y > 1e-3, cov / var_y.clamp_min(1e-3), torch.zeros_like(var_y))
    return cy, cx, alpha.clamp(-MAX_SHEAR, MAX_SHEAR)


def _luminance(image: ImageInput) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 luminance 0..255 and, when the input has one, alpha 0..1."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        image = load_image_bytes(bytes(image))
    if isinstance(image, Image.Image):
        has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
        image = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) \
            or array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageError(f"expected an H x W, H x W x 3 or H x W x 4 image, got shape {array.shape}")
    if array.dtype == np.bool_:
        array = array.astype(np.float32) * 255.0
    elif array.dtype.kind == "f" and array.size and float(array.max()) <= 1.0:
        array = array * 255.0  # float images in 0..1
    array = array.astype(np.float32, copy=False)
    if array.ndim == 2:
        return np.clip(array, 0, 255), None
    lum = np.clip(array[:, :, :3] @ LUMA, 0, 255)
    alpha = np.clip(array[:, :, 3], 0, 255) / 255.0 if array.shape[2] == 4 else None
    return lum, alpha


def _ink(lum: np.ndarray, alpha: np.ndarray | None,
         invert: bool | None) -> tuple[np.ndarray | None, bool]:
    """Ink intensity 0..255 (bright = ink) and whether the picture was inverted."""
    if alpha is not None and float(_frame(alpha).mean()) < 0.5:
        # Transparent paper: transparent means no ink whatever the polarity, and the
        # colour of the opaque strokes tells dark pen from light pen.
        weight = float(alpha.sum())
        if weight == 0:
            return None, bool(invert)
        if invert is None:
            invert = float((lum * alpha).sum()) / weight <= 127
        return ((255.0 - lum) if invert else lum) * alpha, invert
    gray = lum * alpha if alpha is not None else lum  # opaque picture: composite over black
    if invert is None:
        invert = float(_frame(gray).mean()) > 127  # light border = paper, so dark ink
    return (255.0 - gray) if invert else gray, invert


def _frame(a: np.ndarray) -> np.ndarray:
    """The outer FRAME-pixel border, or the whole array when it is too small to have one."""
    height, width = a.shape
    if height <= 2 * FRAME or width <= 2 * FRAME:
        return a.ravel()
    return np.concatenate([a[:FRAME].ravel(), a[-FRAME:].ravel(),
                           a[FRAME:-FRAME, :FRAME].ravel(), a[FRAME:-FRAME, -FRAME:].ravel()])
