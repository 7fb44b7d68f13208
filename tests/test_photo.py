"""lrcore.photo: any photo -> uint8 side x side (or 3 x side x side), as Resize + CenterCrop."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from lrcore.photo import decode_photo, photo_tensor
from lrcore.preprocess import ImageError


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_shorter_side_resized_then_centre_cropped():
    # 60 wide x 30 tall: left third red, middle third green, right third blue. Resized to 32 tall
    # (64 wide), the centre 32 columns are the green middle plus a little of each side.
    array = np.zeros((30, 60, 3), dtype=np.uint8)
    array[:, :20, 0] = array[:, 20:40, 1] = array[:, 40:, 2] = 255
    out = photo_tensor(Image.fromarray(array), 32, colour=True)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    assert out[1, :, 10:22].min() > 200 and out[0, :, 10:22].max() < 60  # green in the middle
    assert out[0, :, 0].float().mean() > 150 and out[2, :, -1].float().mean() > 150  # edges of red and blue


def test_grey_and_colour_channels():
    grey = Image.fromarray(np.full((40, 40), 100, dtype=np.uint8), "L")
    colour = photo_tensor(grey, 28, colour=True)
    assert colour.shape == (3, 28, 28) and (colour[0] == colour[1]).all() and (colour[1] == colour[2]).all()
    red = Image.new("RGB", (40, 50), (255, 0, 0))
    assert photo_tensor(red, 28, colour=False).shape == (28, 28)
    assert abs(int(photo_tensor(red, 28, colour=False)[5, 5]) - 76) <= 1  # ITU-R 601 luma of red


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P-transparent"])
def test_transparency_composited_on_white(mode):
    array = np.zeros((40, 40, 4), dtype=np.uint8)
    array[10:30, 10:30] = (0, 0, 255, 255)  # an opaque blue square on transparent (black) paper
    image = Image.fromarray(array, "RGBA")
    if mode == "LA":
        image = image.convert("LA")
    elif mode == "P-transparent":
        image = Image.open(io.BytesIO(encoded(image.convert("P", palette=Image.Palette.ADAPTIVE, colors=4))))
        assert image.mode in ("P", "RGBA")
    out = decode_photo(encoded(image), 32, colour=True)
    assert out[:, 0, 0].tolist() == [255, 255, 255]  # the corner was transparent: white, not black
    assert out[:, 16, 16].float().mean() < 200  # the square stays


def test_palette_without_transparency_and_jpeg_and_16_bit():
    array = np.zeros((30, 30, 3), dtype=np.uint8)
    array[:, :, 1] = 200
    palette = Image.fromarray(array).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    assert decode_photo(encoded(palette), 28, colour=True)[1, 5, 5] > 190
    jpeg = decode_photo(encoded(Image.fromarray(array), "JPEG", quality=95), 28, colour=True)
    assert jpeg.shape == (3, 28, 28) and abs(int(jpeg[1, 5, 5]) - 200) < 10
    sixteen = Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16))
    assert decode_photo(encoded(sixteen), 28, colour=False).min() == 255  # scaled to 8 bits, not clipped


def tall_photo_with_orientation_6() -> bytes:
    """A landscape picture stored sideways, as a phone does: the EXIF orientation 6 says
    "rotate 90 degrees clockwise to view". Upright it is tall: red top half, blue bottom half."""
    upright = np.zeros((80, 40, 3), dtype=np.uint8)
    upright[:40, :, 0] = 255
    upright[40:, :, 2] = 255
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # 80 wide x 40 tall
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(stored, "JPEG", quality=95, exif=exif)


def test_exif_rotation_applied_once():
    data = tall_photo_with_orientation_6()
    for out in (decode_photo(data, 32, colour=True),
                photo_tensor(Image.open(io.BytesIO(data)), 32, colour=True)):
        # upright and tall: the 32x32 centre crop is red above, blue below
        assert out[0, 2, 16] > 200 and out[2, 2, 16] < 60
        assert out[2, -3, 16] > 200 and out[0, -3, 16] < 60


def test_bad_bytes_raise_image_error():
    with pytest.raises(ImageError, match="not a PNG or JPEG"):
        decode_photo(b"GIF89a....", 32, colour=True)
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode_photo(b"\x89PNG\r\n\x1a\n" + b"\0" * 20, 32, colour=True)
