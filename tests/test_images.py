"""pipeline.images.read_image on real files: formats, orientation, bad files, huge images."""

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.images import ImageError, read_image


def picture() -> np.ndarray:
    """A 30 x 40 RGB image whose channels differ (so a BGR/RGB swap shows)."""
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0] = np.arange(40, dtype=np.uint8)[None, :] * 6  # red grows to the right
    rgb[..., 1] = 100
    rgb[..., 2] = np.arange(30, dtype=np.uint8)[:, None] * 8  # blue grows downwards
    return rgb


def test_png_is_read_exactly_as_rgb(tmp_path: Path) -> None:
    rgb = picture()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3)
    np.testing.assert_array_equal(out, rgb)


def test_jpeg_matches_opencv_decoding(tmp_path: Path) -> None:
    rgb = picture()
    cv2.imwrite(str(tmp_path / "a.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = read_image(str(tmp_path / "a.jpg"))
    ref = cv2.cvtColor(cv2.imread(str(tmp_path / "a.jpg")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out, ref)
    assert np.abs(out.astype(int) - rgb).mean() < 3  # and it is the picture


def test_grey_alpha_and_16_bit_become_rgb_uint8(tmp_path: Path) -> None:
    grey = np.arange(30 * 40, dtype=np.uint8).reshape(30, 40)
    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), np.dstack([grey] * 3))
    rgba = np.dstack([picture(), np.full((30, 40), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), picture())
    deep = grey.astype(np.uint16) * 257  # 16-bit grey: the high byte is the 8-bit value
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    np.testing.assert_array_equal(read_image(tmp_path / "d.png")[..., 1], grey)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.fromarray(picture())
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    out = read_image(tmp_path / "phone.jpg")
    assert out.shape == (40, 30, 3)
    # the top row shown is the picture's left column turned: red ~0 along it
    assert out[0, :, 0].max() < 20 and out[-1, :, 0].min() > 200


def test_missing_garbage_and_truncated_files_are_errors_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"image not found: .*nope\.png"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="not a file"):
        read_image(tmp_path)
    (tmp_path / "garbage.jpg").write_bytes(b"this is not an image\x00\x01" * 50)
    with pytest.raises(ImageError, match=r"cannot read image .*garbage\.jpg: not a readable"):
        read_image(tmp_path / "garbage.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png"):
        read_image(tmp_path / "empty.png")
    Image.fromarray(picture()).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cannot read image .*cut\.png"):
        read_image(tmp_path / "cut.png")
    assert issubclass(ImageError, ValueError)  # callers that catch ValueError still do


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels, with (almost) no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))  # fmt: skip


@pytest.mark.parametrize(
    ("size", "limit"), [((20_000, 20_000), None), ((10_000, 6_000), None), ((100, 100), 9_999)]
)
def test_too_many_pixels_are_refused_from_the_header(tmp_path: Path, size, limit) -> None:
    (tmp_path / "huge.png").write_bytes(png_header(*size))
    kwargs = {} if limit is None else {"max_pixels": limit}
    with pytest.raises(ImageError, match=r"huge\.png is too large"):
        read_image(tmp_path / "huge.png", **kwargs)


def test_the_limit_is_a_parameter(tmp_path: Path) -> None:
    Image.fromarray(picture()).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png", max_pixels=30 * 40).shape == (30, 40, 3)
    with pytest.raises(ImageError, match="1,199"):
        read_image(tmp_path / "a.png", max_pixels=30 * 40 - 1)
