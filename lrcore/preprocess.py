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
import math
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .datasets import DIGIT_SHAPE

_, SIZE, _ = DIGIT_SHAPE  # output frame: the digit datasets' input shape (MNIST's 28x28)
BOX = 20  # the ink's longer side after scaling, as MNIST
CENTRE = 14.0  # MNIST's mean centre of mass in pixel-index coordinates (measured: 13.99, 14.00)
EMPTY_PEAK = 32.0  # strongest ink (0..255, paper level removed) below this = nothing drawn
BBOX_FRACTION = 0.1  # a pixel belongs to the digit when above 10% of the strongest ink...
HAZE = EMPTY_PEAK / 2  # ...and above this absolute level; weaker pixels are noise, set to 0
FRAME = 2  # border width (px) that tells paper colour and paper level
MAX_BYTES = 5 * 1024 * 1024
MAX_SIDE = 4096
# Decoding budget. A PNG decodes whole (no reduce-on-decode): 12 MP of RGBA is 48 MB, the most
# one upload may cost; JPEGs are reduced while decoding. Every picture is then shrunk to
# WORK_SIDE px a side: the digit ends up 20 px tall, so that is plenty.
MAX_PIXELS = 12_000_000
WORK_SIDE = 1024
BAND_ROWS = 256  # input rows shrunk at a time for pictures with alpha
SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")
EXIF_ORIENTATION = 0x0112
ORIENTATION_FIX = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                   6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                   8: Image.Transpose.ROTATE_90}  # as ImageOps.exif_transpose
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
    """Decode an uploaded PNG or JPEG within a memory budget, as an 8-bit L, RGB or RGBA image.

    Refuses oversized, corrupt or huge images, checking the header's size before decoding.
    A digit needs few pixels, so a JPEG is reduced while it is decoded (`Image.draft`), a PNG
    (which decodes whole) over MAX_PIXELS is refused, and the picture is then shrunk to at most
    WORK_SIDE px a side: a hostile 4096x4096 picture no longer costs hundreds of MB. 16-bit
    greyscale is scaled to 8 bits (not clipped), so `st.image` can show every result. Phone
    photos carry their rotation in EXIF, so it is applied here.
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
        if image.format == "PNG" and width * height > MAX_PIXELS:
            raise ImageError(f"image is {width}x{height} px ({width * height / 1e6:.1f} megapixels); a PNG may "
                             f"have at most {MAX_PIXELS / 1e6:g} megapixels: scale it down (a digit needs far "
                             "fewer pixels) or save it as JPEG")
        if image.format == "JPEG":
            image.draft(None, (WORK_SIDE, WORK_SIDE))  # decode at 1/2, 1/4 or 1/8 scale when that is enough
        orientation = image.getexif().get(EXIF_ORIENTATION)
        image.load()
        if image.mode in SIXTEEN_BIT_GREY:  # shrunk first: the scaling to 8 bits then works on few pixels
            image = _eight_bit_grey(_shrink(image, reducing_gap=None))
        else:
            image = _shrink(_eight_bit(image))
        method = ORIENTATION_FIX.get(orientation)
        return image.transpose(method) if method is not None else image
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:  # PIL refuses giant headers inside open()
        raise ImageError(f"image is far too large; at most {MAX_SIDE}x{MAX_SIDE} px is allowed") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"not a PNG or JPEG image (the file is corrupt or truncated: {exc})") from exc


def _eight_bit(image: Image.Image) -> Image.Image:
    """L, RGB or RGBA (any transparency kept as alpha), converting only when the mode differs."""
    if image.mode in ("LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return image.convert("RGBA")
    if image.mode in ("L", "RGB", "RGBA"):
        return image
    return image.convert("L" if image.mode == "1" else "RGB")


def _eight_bit_grey(image: Image.Image) -> Image.Image:
    """16-bit greyscale (0..65535) -> 8-bit L (0..255, value / 257), RGBA when a tRNS grey is transparent."""
    values = np.asarray(image).astype(np.int64).clip(0, 65535)
    grey = ((values * 255 + 32767) // 65535).astype(np.uint8)
    transparent = image.info.get("transparency")
    if not isinstance(transparent, int):
        return Image.fromarray(grey, "L")
    alpha = np.where(values == transparent, 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([grey, grey, grey, alpha]), "RGBA")


def _shrink(image: Image.Image, reducing_gap: float | None = 2.0) -> Image.Image:
    """`image` with its longer side at most WORK_SIDE px (unchanged when it already is)."""
    width, height = image.size
    scale = WORK_SIDE / max(width, height)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.mode not in ("RGBA", "LA"):
        return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=reducing_gap)
    # Pillow resizes alpha images through a premultiplied copy of the whole input (+48 MB at
    # 12 MP); band by band, that copy stays a few MB. Each band reads LANCZOS's reach beyond it.
    out = Image.new(image.mode, size)
    step = height / size[1]  # input rows per output row
    margin = math.ceil(3 * step) + 1
    rows = max(1, int(BAND_ROWS / step))
    for first in range(0, size[1], rows):
        last = min(first + rows, size[1])
        top, bottom = first * step, last * step
        crop_top, crop_bottom = max(0, math.floor(top) - margin), min(height, math.ceil(bottom) + margin)
        band = image.crop((0, crop_top, width, crop_bottom))
        out.paste(band.resize((size[0], last - first), Image.Resampling.LANCZOS,
                              box=(0, top - crop_top, width, bottom - crop_top)), (0, first))
    return out


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
        # a shear about the centre of mass, so ink along x = cx + alpha (y - cy) ends up vertical,
        # and the centre of mass lands on the centre. Measured: this sub-pixel centring scores
        # 0.5-0.8 points higher than moving by whole pixels (mnist-sample, SGD and AdamW).
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
