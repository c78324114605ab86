"""A private X display and a picture of it: what ``globscope paraview --screenshot`` needs to save
the whole ParaView window (pipeline browser, properties, views) from outside ParaView.

ParaView's Python has no handle on its Qt window, so the launcher runs the GUI on its own ``Xvfb``
and grabs that screen with ``xwd`` (Debian's ``x11-apps``) once the GUI says it is ready. The XWD
image is decoded here (numpy) and written as PNG (zlib): no imaging library, no VTK in the core.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np

from globscope.errors import GlobscopeError
from globscope.fileio import atomic_path

SCREEN = (1920, 1080)


class PrivateDisplay:
    """An ``Xvfb`` server on a free display number, stopped on exit::

        with PrivateDisplay() as display:   # ":N"
            ...
    """

    def __init__(self, size=SCREEN):
        self.size = size
        self.proc = None
        self.display = None

    def __enter__(self) -> str:
        xvfb = shutil.which("Xvfb")
        if xvfb is None:
            raise GlobscopeError("Xvfb not found: install xvfb (apt-get install xvfb)")
        r, w = os.pipe()
        # -displayfd: the server picks a free display and writes its number once it accepts clients
        self.proc = subprocess.Popen([xvfb, "-displayfd", str(w), "-screen", "0", f"{self.size[0]}x{self.size[1]}x24",
                                      "-nolisten", "tcp"], pass_fds=(w,), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(w)
        with os.fdopen(r) as f:
            number = f.readline().strip()
        if not number.isdigit():
            self.proc.kill()
            raise GlobscopeError("Xvfb did not start")
        self.display = f":{number}"
        return self.display

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def grab(display: str) -> np.ndarray:
    """The whole screen of an X display, shape (height, width, 3), uint8 RGB."""
    xwd = shutil.which("xwd")
    if xwd is None:
        raise GlobscopeError("xwd not found: install x11-apps (apt-get install x11-apps)")
    r = subprocess.run([xwd, "-root", "-silent", "-display", display], capture_output=True, timeout=60)
    if r.returncode != 0:
        raise GlobscopeError(f"xwd could not read display {display}: {r.stderr.decode(errors='replace').strip()}")
    return decode_xwd(r.stdout)


def decode_xwd(data: bytes) -> np.ndarray:
    """Decode an XWD dump of a TrueColor screen (24/32 bits per pixel), shape (height, width, 3)."""
    header = struct.unpack(">25I", data[:100])
    (header_size, _version, _fmt, depth, width, height, _xoff, byte_order, _unit, _bit_order, _pad,
     bits_per_pixel, bytes_per_line, _visual, red_mask, green_mask, blue_mask, _bits_rgb, _entries,
     ncolors) = header[:20]
    if bits_per_pixel not in (24, 32) or depth < 24:
        raise GlobscopeError(f"xwd: a {depth}-bit screen with {bits_per_pixel} bits per pixel is not supported")
    start = header_size + 12 * ncolors
    rows = np.frombuffer(data, dtype=np.uint8, count=bytes_per_line * height, offset=start)
    rows = rows.reshape(height, bytes_per_line)[:, :width * bits_per_pixel // 8]
    px = rows.reshape(height, width, bits_per_pixel // 8)
    # a pixel's bytes in memory order; the masks say where each channel sits in the pixel value
    value = np.zeros((height, width), dtype=np.uint32)
    order = range(px.shape[2]) if byte_order == 1 else reversed(range(px.shape[2]))  # 1: MSB first
    for i in order:
        value = (value << np.uint32(8)) | px[:, :, i].astype(np.uint32)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for c, mask in enumerate((red_mask, green_mask, blue_mask)):
        shift = (mask & -mask).bit_length() - 1
        out[:, :, c] = ((value & np.uint32(mask)) >> np.uint32(shift)).astype(np.uint8)
    return out


def crop_to_content(rgb: np.ndarray, background=(0, 0, 0)) -> np.ndarray:
    """The smallest box holding every pixel that is not ``background`` (Xvfb's root is black)."""
    keep = np.any(rgb != np.asarray(background, np.uint8), axis=2)
    if not keep.any():
        return rgb
    ys, xs = np.nonzero(keep.any(axis=1))[0], np.nonzero(keep.any(axis=0))[0]
    return rgb[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]


def write_png(path, rgb: np.ndarray) -> Path:
    """An RGB image (height, width, 3) as an 8-bit PNG, written atomically."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))  # filter type 0 on every row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
    return path


__all__ = ["PrivateDisplay", "grab", "decode_xwd", "crop_to_content", "write_png", "SCREEN"]
