"""Hostile and odd images, generated at test time, through the HTTP API.

Each case must end in the 4xx of README's error table (413 over a limit, 415 not a supported
image or a truncated one, 400 a fetch that yields no image), or a 200 for an odd but valid
image. Never a 5xx, never a hang, and within bounded memory: every request runs under
tracemalloc and its traced peak, and the growth of the process's peak RSS, are checked loosely.
Uploads go as raw bodies (and some as multipart); some come through image_url from the local
image server or from a raw socket server that lies, compresses or drips.
"""

from __future__ import annotations

import functools
import gzip
import io
import random
import resource
import socket
import struct
import threading
import tracemalloc
import zlib

import falcon
import hug
import numpy as np
import pytest
from PIL import Image, ImageFile

import api
from conftest import png_bytes, upload
from test_images import png_header

MB = 1024 * 1024
TRACED_PEAK_LIMIT = 64 * MB  # Python and numpy allocations of one request
RSS_GROWTH_LIMIT = 256 * MB  # growth of the process's peak RSS during one request

# Pillow warns about each EXIF entry it skips in the hostile EXIF cases: that is its defence
# working, not news.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")

TOO_LARGE = (413, {"errors": {"image": "image_too_large"}})
UNSUPPORTED = (415, {"errors": {"image": "unsupported_image"}})
TRUNCATED = (415, {"errors": {"image": "image_truncated"}})
FETCH_FAILED = (400, {"errors": {"image_url": "image_fetch_failed"}})


# -- making images -----------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    return png_bytes(image, format=fmt, **options)


def noise(width: int = 64, height: int = 48, mode: str = "RGB", seed: int = 7) -> Image.Image:
    """Random pixels: incompressible, so truncation really cuts pixel data."""
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return rgb if mode == "RGB" else rgb.convert(mode)


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_from_chunks(*chunks: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def jpeg_claiming(width: int, height: int, progressive: bool = False) -> bytes:
    """A real small JPEG whose SOF header claims width x height."""
    data = bytearray(encode(noise(16, 16), "JPEG", progressive=progressive))
    marker = data.find(b"\xff\xc2" if progressive else b"\xff\xc0")
    struct.pack_into(">HH", data, marker + 5, height, width)  # FFCx, length, precision, h, w
    return bytes(data)


def jpeg_with_sof(marker: bytes, precision: int = 8) -> bytes:
    """A baseline JPEG relabelled as another SOF type (lossless, 12-bit, arithmetic, ...)."""
    data = bytearray(encode(noise(16, 16), "JPEG"))
    at = data.find(b"\xff\xc0")
    data[at:at + 2] = marker
    data[at + 4] = precision
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(noise(16, 16).convert("P"), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)  # the logical screen
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(noise(16, 16), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def bmp_top_down() -> bytes:
    """A 64x48 BMP stored top row first (a negative height), as some encoders write them."""
    data = bytearray(encode(noise(), "BMP"))
    rows = [data[54 + 192 * y:54 + 192 * (y + 1)] for y in range(48)]
    data[54:] = b"".join(reversed(rows))
    struct.pack_into("<i", data, 22, -48)
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    """A hand-made little-endian grey TIFF whose IFD claims width x height, with 16 bytes of
    pixel data."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 8 + 2 + 12 * 8 + 4), (278, 4, 1, height),
               (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x80" * 16


def webp_claiming(width: int, height: int) -> bytes:
    """A lossless WebP whose VP8L header claims width x height (at most 16384 each)."""
    data = bytearray(encode(noise(16, 16), "WEBP", lossless=True))
    at = data.find(b"VP8L") + 8
    assert data[at] == 0x2F
    bits = struct.unpack_from("<I", data, at + 1)[0]
    bits = (bits & ~0x0FFFFFFF) | (width - 1) | ((height - 1) << 14)
    struct.pack_into("<I", data, at + 1, bits)
    return bytes(data)


def png_bomb(width: int = 10_000, height: int = 5_000) -> bytes:
    """A real, complete grey PNG of width x height zeros: about 50 kB for 50 megapixels."""
    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return png_from_chunks(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)),
                           chunk(b"IDAT", idat), chunk(b"IEND", b""))


def png_with_bad_crc(where: bytes) -> bytes:
    good = encode(noise(), "PNG")
    at = good.find(where)
    length = struct.unpack(">I", good[at - 4:at])[0]
    end = at + 4 + length
    return good[:end] + bytes([good[end] ^ 0xFF]) + good[end + 1:]


def ztxt_bomb() -> bytes:
    """A valid PNG with a zTXt chunk that inflates to 8 MB (Pillow stops at 1 MB)."""
    text = b"Comment\x00\x00" + zlib.compress(b"\x00" * (8 * MB), 9)
    image = encode(noise(), "PNG")
    return image[:33] + chunk(b"zTXt", text) + image[33:]  # right after IHDR


def exif_block(entries: list[tuple[int, int, int, bytes]], blob: bytes = b"") -> bytes:
    """A raw little-endian EXIF block (for JPEG APP1): IFD0 with the given entries, then blob.

    Each entry is (tag, type, count, 4-byte value or offset); offsets count from the TIFF header.
    """
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4 + blob


def jpeg_with_exif(exif: bytes, size=(40, 20)) -> bytes:
    return encode(noise(*size), "JPEG", exif=exif)


def huge_exif() -> bytes:
    """A JPEG with an EXIF block at the 64 kB a JPEG marker can hold."""
    blob = bytes(random.Random(3).randbytes(65_000))
    offset = 8 + 2 + 12 + 4
    return jpeg_with_exif(exif_block([(0x927C, 7, len(blob), struct.pack("<I", offset))], blob))


def exif_amplifier() -> bytes:
    """2000 distinct tags in IFD0, every one pointing at the same 30 kB blob (60 MB if each
    were read out separately), plus an Orientation that needs a transpose."""
    count = 2000
    offset = 8 + 2 + 12 * (count + 1) + 4
    blob = b"\xab" * 30_000
    entries = [(0x0112, 3, 1, struct.pack("<HH", 6, 0))]
    entries += [(0xA000 + i, 7, len(blob), struct.pack("<I", offset)) for i in range(count)]
    return jpeg_with_exif(exif_block(entries, blob))


def exif_orientation(value: int) -> bytes:
    return jpeg_with_exif(exif_block([(0x0112, 3, 1, struct.pack("<HH", value, 0))]))


def corrupt_exif() -> bytes:
    """Orientation 6, then entries whose offsets, counts and types are nonsense."""
    entries = [(0x0112, 3, 1, struct.pack("<HH", 6, 0)),
               (0x010F, 2, 0xFFFFFFFF, struct.pack("<I", 0xFFFFFFF0)),  # ASCII, huge, far away
               (0x8769, 4, 1, struct.pack("<I", 8)),  # Exif IFD pointing back at IFD0: a loop
               (0x8825, 4, 1, struct.pack("<I", 0x7FFFFFFF)),  # GPS IFD off the end
               (0x0110, 99, 5, b"abcd")]  # an unknown type
    return jpeg_with_exif(exif_block(entries))


def exif_garbage() -> bytes:
    return jpeg_with_exif(b"Exif\x00\x00" + random.Random(5).randbytes(3000))


def jpeg_with_many_segments() -> bytes:
    """2000 comment segments of 1 kB before the frame header."""
    data = encode(noise(), "JPEG")
    comment = b"\xff\xfe" + struct.pack(">H", 1002) + b"c" * 1000
    return data[:2] + comment * 2000 + data[2:]


def jpeg_with_huge_icc() -> bytes:
    """A 2 MB ICC profile of garbage, split over 33 APP2 markers."""
    return encode(noise(), "JPEG", icc_profile=random.Random(9).randbytes(2 * MB))


@functools.cache
def gif_300_frames() -> bytes:
    frames = [Image.new("P", (64, 64), i % 256) for i in range(300)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=10)
    return buffer.getvalue()


def animated(fmt: str, frames: int = 30, **options) -> bytes:
    images = [noise(32, 32, seed=i) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format=fmt, save_all=True, append_images=images[1:], **options)
    return buffer.getvalue()


def gray16_png() -> bytes:
    levels = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (48, 1))
    return png_bytes(Image.fromarray(levels))


def palette_png_with_transparency() -> bytes:
    return encode(noise().quantize(colors=16), "PNG", transparency=0)


def multipage_tiff(pages: int = 20, **options) -> bytes:
    images = [noise(seed=i) for i in range(pages)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="TIFF", save_all=True, append_images=images[1:], **options)
    return buffer.getvalue()


def float_tiff_with_nan_and_inf() -> bytes:
    values = np.linspace(-1e30, 1e30, 64 * 48, dtype=np.float32).reshape(48, 64)
    values[0, :8] = np.nan
    values[1, :8] = np.inf
    values[2, :8] = -np.inf
    return encode(Image.fromarray(values, mode="F"), "TIFF")


def fits() -> bytes:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8",
             "NAXIS   =                    2", "NAXIS1  =                   16",
             "NAXIS2  =                   16", "END"]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode()
    return header + bytes(range(256)).ljust(2880, b"\x00")


def psd() -> bytes:
    """A complete 16x16 RGB Photoshop file, raw channels."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 16, 16, 8, 3)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + bytes(3 * 16 * 16)


def other_format(fmt: str, mode: str = "RGB", size=(32, 32), **options):
    return lambda: encode(noise(*size).convert(mode), fmt, **options)


EPS = other_format("EPS")
PDF = other_format("PDF")
HTML = b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"
SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="40000" '
       b'height="40000"><image href="file:///etc/passwd"/></svg>')


def ok(width: int, height: int):
    """A 200 with no faces, reporting this size."""
    return (200, {"faces": [], "image": {"width": width, "height": height}})


# (id, maker, expected): expected is (status, body), or a set of acceptable statuses where the
# right answer is a judgement call (the README allows a 200 or a 4xx).
CASES = [
    # headers that claim gigapixels, and a real bomb: small files, refused before decoding
    ("png_ihdr_40000x40000", lambda: png_header(40_000, 40_000), TOO_LARGE),
    ("jpeg_sof0_40000x40000", lambda: jpeg_claiming(40_000, 40_000), TOO_LARGE),
    ("jpeg_sof2_progressive_40000x40000",
     lambda: jpeg_claiming(40_000, 40_000, progressive=True), TOO_LARGE),
    ("jpeg_sof0_65535x65535", lambda: jpeg_claiming(65_535, 65_535), TOO_LARGE),
    ("gif_screen_65535x65535", lambda: gif_claiming(65_535, 65_535), TOO_LARGE),
    ("tiff_ifd_40000x40000", lambda: tiff_claiming(40_000, 40_000), TOO_LARGE),
    ("bmp_40000x40000", lambda: bmp_claiming(40_000, 40_000), {413, 415}),
    ("webp_vp8l_16384x16384", lambda: webp_claiming(16_384, 16_384), {413, 415}),
    ("png_bomb_50_megapixels_of_zeros", png_bomb, TOO_LARGE),
    # not images, or formats the service does not accept
    ("zero_bytes", lambda: b"", UNSUPPORTED),  # as a raw body, "nothing uploaded" (400) is fine
    ("random_bytes", lambda: random.Random(1234).randbytes(64 * 1024), UNSUPPORTED),
    ("html", lambda: HTML, UNSUPPORTED),
    ("svg", lambda: SVG, UNSUPPORTED),
    ("pdf", PDF, UNSUPPORTED),
    ("eps", EPS, UNSUPPORTED),
    ("fits", fits, UNSUPPORTED),
    ("psd", psd, UNSUPPORTED),
    ("ico", other_format("ICO"), UNSUPPORTED),
    ("icns", other_format("ICNS", size=(16, 16)), UNSUPPORTED),
    ("ppm", other_format("PPM"), UNSUPPORTED),
    ("tga", other_format("TGA"), UNSUPPORTED),
    ("pcx", other_format("PCX"), UNSUPPORTED),
    ("jpeg2000", other_format("JPEG2000"), UNSUPPORTED),
    ("qoi", other_format("QOI"), UNSUPPORTED),
    ("dds", other_format("DDS"), UNSUPPORTED),
    ("sgi", other_format("SGI"), UNSUPPORTED),
    ("im", other_format("IM"), UNSUPPORTED),
    ("xbm", other_format("XBM", mode="1"), UNSUPPORTED),
    ("msp", other_format("MSP", mode="1"), UNSUPPORTED),
    ("spider", other_format("SPIDER", mode="F"), UNSUPPORTED),
    ("avif", other_format("AVIF"), UNSUPPORTED),
    ("blp", other_format("BLP", mode="P"), UNSUPPORTED),
    ("jpeg_lossless_sof3", lambda: jpeg_with_sof(b"\xff\xc3"), UNSUPPORTED),
    ("jpeg_12_bit", lambda: jpeg_with_sof(b"\xff\xc1", precision=12), UNSUPPORTED),
    # broken files of accepted formats
    ("jpeg_truncated_at_half", lambda: encode(noise(256, 256), "JPEG")[:8000], TRUNCATED),
    ("png_truncated_in_idat", lambda: encode(noise(256, 256), "PNG")[:20_000], TRUNCATED),
    ("png_signature_only", lambda: b"\x89PNG\r\n\x1a\n", {415}),
    ("png_bad_crc_in_ihdr", lambda: png_with_bad_crc(b"IHDR"), UNSUPPORTED),
    ("png_bad_crc_in_idat", lambda: png_with_bad_crc(b"IDAT"), {200, 415}),
    ("png_0x0", lambda: png_header(0, 0), UNSUPPORTED),
    ("gif_screen_0x0", lambda: gif_claiming(0, 0), {200, 415}),  # Pillow uses the frame's size
    ("bmp_0x0", lambda: bmp_claiming(0, 0), {415}),
    ("jpeg_0x0", lambda: jpeg_claiming(0, 0), {415}),
    ("png_ztxt_bomb", ztxt_bomb, {200, 415}),
    # odd but valid: a 200
    ("gif_300_frames", gif_300_frames, ok(64, 64)),
    ("png_16_bit_grey", gray16_png, ok(64, 48)),
    ("jpeg_cmyk", lambda: encode(noise(mode="CMYK"), "JPEG"), ok(64, 48)),
    ("png_palette_transparency", palette_png_with_transparency, ok(64, 48)),
    ("png_rgba", lambda: encode(noise(mode="RGBA"), "PNG"), ok(64, 48)),
    ("png_1_bit", lambda: encode(noise(mode="1"), "PNG"), ok(64, 48)),
    ("tiff_plain", lambda: encode(noise(), "TIFF"), ok(64, 48)),
    ("tiff_20_pages", multipage_tiff, ok(64, 48)),
    ("tiff_lzw", lambda: encode(noise(), "TIFF", compression="tiff_lzw"), ok(64, 48)),
    ("tiff_deflate", lambda: encode(noise(), "TIFF", compression="tiff_adobe_deflate"),
     ok(64, 48)),
    ("tiff_jpeg", lambda: encode(noise(), "TIFF", compression="jpeg"), ok(64, 48)),
    ("tiff_packbits", lambda: encode(noise(), "TIFF", compression="packbits"), ok(64, 48)),
    ("tiff_multipage_lzw", lambda: multipage_tiff(5, compression="tiff_lzw"), ok(64, 48)),
    ("tiff_16_bit", lambda: encode(Image.fromarray(
        np.full((48, 64), 40000, np.uint16)), "TIFF"), ok(64, 48)),
    ("tiff_float_nan_inf", float_tiff_with_nan_and_inf, ok(64, 48)),
    ("tiff_cmyk", lambda: encode(noise(mode="CMYK"), "TIFF"), ok(64, 48)),
    ("webp_lossy", lambda: encode(noise(), "WEBP"), ok(64, 48)),
    ("webp_lossless", lambda: encode(noise(), "WEBP", lossless=True), ok(64, 48)),
    ("webp_animated", lambda: animated("WEBP"), ok(32, 32)),
    ("png_animated_apng", lambda: animated("PNG"), ok(32, 32)),
    ("bmp_24_bit", lambda: encode(noise(), "BMP"), ok(64, 48)),
    ("bmp_32_bit", lambda: encode(noise(mode="RGBA"), "BMP"), ok(64, 48)),
    ("bmp_top_down", bmp_top_down, ok(64, 48)),
    ("mpo_multi_picture", lambda: animated("MPO", 3), ok(32, 32)),
    ("jpeg_huge_exif_64k", huge_exif, ok(40, 20)),
    ("jpeg_exif_2000_tags_one_blob", exif_amplifier, ok(20, 40)),
    ("jpeg_corrupt_exif", corrupt_exif, {200, 415}),
    ("jpeg_exif_garbage", exif_garbage, {200, 415}),
    ("jpeg_exif_orientation_0", lambda: exif_orientation(0), ok(40, 20)),
    ("jpeg_exif_orientation_8", lambda: exif_orientation(8), ok(20, 40)),
    ("jpeg_exif_orientation_9", lambda: exif_orientation(9), ok(40, 20)),
    ("jpeg_exif_orientation_65535", lambda: exif_orientation(65535), ok(40, 20)),
    ("jpeg_2_mb_icc_profile", jpeg_with_huge_icc, ok(64, 48)),
    ("jpeg_2000_comment_segments", jpeg_with_many_segments, ok(64, 48)),
    ("png_1x1", lambda: encode(Image.new("RGB", (1, 1), "white"), "PNG"), ok(1, 1)),
    ("png_1x10000", lambda: encode(Image.new("L", (1, 10_000), 128), "PNG"), ok(1, 10_000)),
    ("png_10000x1", lambda: encode(Image.new("L", (10_000, 1), 128), "PNG"), ok(10_000, 1)),
    ("jpeg_1x10000", lambda: encode(noise(1, 10_000), "JPEG"), ok(1, 10_000)),
]


# -- measuring one request ---------------------------------------------------------------------


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def measured(request):
    """Run one request under tracemalloc; check its memory loosely and that the service lives."""
    rss_before = _maxrss()
    tracemalloc.start()
    try:
        response = request()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < TRACED_PEAK_LIMIT, f"traced peak {peak / MB:.0f} MB"
    assert _maxrss() - rss_before < RSS_GROWTH_LIMIT, "peak RSS grew too much"
    assert hug.test.get(api, "health").status == falcon.HTTP_200
    return response


def check(response, expected) -> None:
    status = int(response.status.split()[0])
    assert status < 500, (response.status, response.data)
    if isinstance(expected, set):
        assert status in expected, (response.status, response.data)
        if status >= 400:
            assert set(response.data) <= {"errors", "detail"}, response.data
        return
    body = {"errors": response.data["errors"]} if status >= 400 else response.data
    assert (status, body) == expected


def post_raw(data: bytes, content_type: str = "image/jpeg"):
    return hug.test.post(api, "recognize", body=data, headers={"content-type": content_type})


# -- the cases, as raw bodies --------------------------------------------------------------------


@pytest.mark.parametrize("maker, expected", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_hostile_upload(env, maker, expected):
    data = maker()
    if not data:  # hug does not parse an empty body at all: the image is simply missing
        expected = {400, 415}
    check(measured(lambda: post_raw(data)), expected)


# -- some of them through image_url, multipart and /enroll ---------------------------------------

SERVED_AS_JPEG = ["html", "svg", "pdf", "eps", "fits", "psd", "zero_bytes", "random_bytes",
                  "png_ihdr_40000x40000", "jpeg_sof0_40000x40000",
                  "png_bomb_50_megapixels_of_zeros", "jpeg_truncated_at_half", "gif_300_frames",
                  "tiff_20_pages"]
BY_ID = {case[0]: case for case in CASES}


@pytest.mark.parametrize("case_id", SERVED_AS_JPEG)
def test_hostile_bytes_served_as_image_jpeg(env, serve, case_id):
    _, maker, expected = BY_ID[case_id]
    url = serve(maker(), "/photo.jpg", content_type="image/jpeg")
    check(measured(lambda: hug.test.get(api, "recognize", image_url=url)), expected)


@pytest.mark.parametrize("case_id", ["png_ihdr_40000x40000", "html", "jpeg_truncated_at_half",
                                     "tiff_lzw"])
def test_hostile_multipart_upload(env, case_id):
    _, maker, expected = BY_ID[case_id]
    body, headers = upload("recognize", maker())
    check(measured(lambda: hug.test.post(api, "recognize", body=body, headers=headers)),
          expected)


@pytest.mark.parametrize("case_id", ["png_ihdr_40000x40000", "psd", "jpeg_truncated_at_half",
                                     "gif_300_frames", "png_1x10000"])
def test_hostile_enrolment(env, case_id):
    _, maker, expected = BY_ID[case_id]
    data = maker()
    response = measured(lambda: hug.test.post(api, "enroll", body=data, name="mallory",
                                              headers={"content-type": "image/png"}))
    if not isinstance(expected, set) and expected[0] == 200:
        expected = (422, {"errors": {"image": "no_face"}})  # valid, but nobody in it
    check(response, expected)
    assert hug.test.get(api, "people").data["total"] == 0


# -- hostile image servers -------------------------------------------------------------------------


class RawServer:
    """A one-connection TCP server that reads the request, then sends scripted pieces, waiting
    `delay` seconds between them, until the pieces end, the client leaves or the test ends."""

    def __init__(self, pieces, delay: float = 0.0) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/photo.jpg"
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(pieces, delay), daemon=True)
        self._thread.start()

    def _run(self, pieces, delay: float) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return
        with connection:
            try:
                connection.recv(65536)
                for piece in pieces:
                    if self._stop.is_set():
                        return
                    connection.sendall(piece)
                    self.sent += len(piece)
                    if delay:
                        self._stop.wait(delay)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self._thread.join(5)


@pytest.fixture
def raw_server():
    servers = []

    def start(pieces, delay: float = 0.0) -> RawServer:
        servers.append(RawServer(pieces, delay))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def head(status: str = "200 OK", **headers) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: image/jpeg", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def fetch_via(url: str):
    return measured(lambda: hug.test.get(api, "recognize", image_url=url))


def test_a_gzip_encoded_image_is_refused(env, httpserver):
    httpserver.expect_request("/photo.jpg").respond_with_data(
        gzip.compress(encode(noise(), "PNG")), content_type="image/png",
        headers={"Content-Encoding": "gzip"})
    check(fetch_via(httpserver.url_for("/photo.jpg")), FETCH_FAILED)


def test_a_gzip_bomb_is_refused_without_inflating_it(env, httpserver):
    bomb = gzip.compress(bytes(10 * MB), 9)  # 10 kB on the wire, 10 MB inflated
    httpserver.expect_request("/photo.jpg").respond_with_data(
        bomb, content_type="image/jpeg", headers={"Content-Encoding": "gzip"})
    check(fetch_via(httpserver.url_for("/photo.jpg")), FETCH_FAILED)


def test_a_content_length_shorter_than_the_body(env, raw_server):
    image = encode(noise(256, 256), "JPEG")
    server = raw_server([head(Content_Length=10) + image])
    check(fetch_via(server.url), {415})  # the 10 bytes it declared are no image


def test_a_content_length_longer_than_the_body(env, raw_server):
    image = encode(noise(256, 256), "JPEG")
    server = raw_server([head(Content_Length=len(image) * 4) + image])  # then closes
    check(fetch_via(server.url), {400, 415})


def test_a_content_length_over_the_cap_is_refused_before_reading(env, raw_server):
    server = raw_server([head(Content_Length=50 * MB) + b"\xff\xd8" * 1000])
    check(fetch_via(server.url), (413, {"errors": {"image_url": "image_too_large"}}))


def test_an_undeclared_endless_body_is_cut_at_the_cap(reconfigure, raw_server):
    reconfigure(max_image_bytes=1 * MB)
    server = raw_server([head()] + [b"\xff" * 65536] * 64)  # 4 MB, no Content-Length
    check(fetch_via(server.url), (413, {"errors": {"image_url": "image_too_large"}}))
    assert server.sent < 4 * MB


def test_an_invalid_content_length_is_not_a_crash(env, raw_server):
    server = raw_server([head(Content_Length="-1, 99999999999999999999") + png_header(10, 10)])
    check(fetch_via(server.url), {400, 415})


@pytest.mark.timeout(15)
def test_a_server_dripping_the_body_a_byte_a_second_is_cut_off(reconfigure, raw_server):
    reconfigure(fetch_timeout=2)
    server = raw_server([head(Content_Length=100_000)] + [b"\xff"] * 60, delay=1.0)
    check(fetch_via(server.url), FETCH_FAILED)
    assert server.sent < 100  # it was not read to the end


@pytest.mark.timeout(15)
def test_a_server_dripping_its_headers_a_byte_a_second_is_cut_off(reconfigure, raw_server):
    """The total deadline covers the status line and headers too, not only the body."""
    reconfigure(fetch_timeout=2)
    server = raw_server([b"HTTP/1.1 200 OK\r\nX-Drip: "] + [b"a"] * 60, delay=1.0)
    check(fetch_via(server.url), FETCH_FAILED)


@pytest.mark.timeout(15)
def test_a_server_that_never_answers_is_cut_off(reconfigure, raw_server):
    reconfigure(fetch_timeout=2)
    server = raw_server([b""] * 30, delay=1.0)  # accepts, reads the request, says nothing
    check(fetch_via(server.url), FETCH_FAILED)


# -- after all of the above ----------------------------------------------------------------------


def test_zz_the_service_is_healthy_after_the_whole_suite(env):
    """Runs last in this file: the process still answers, and no hostile input changed the
    process-wide decoder settings."""
    response = hug.test.get(api, "health")
    assert response.status == falcon.HTTP_200
    assert response.data["status"] == "ok"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    check(post_raw(encode(noise(), "PNG"), "image/png"), ok(64, 48))
