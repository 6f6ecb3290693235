"""An uploaded image, from the request to an ``(H, W, 3)`` uint8 array, or a :class:`RequestError`
with the status and the one line to answer.

The body is read as it streams, counted against ``max_bytes`` (a declared ``Content-Length`` over it
is refused before a byte is read); the image's size is read from its header and checked against
``max_pixels`` before it is decoded, so neither a huge upload nor a small file that decodes to
gigabytes (a decompression bomb) costs the server its memory.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import AsyncIterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from csrseg.data.io import to_rgb

# a raw body may say it is any image type, or say nothing about itself (decoded by content either way)
RAW_TYPES = ("image/", "application/octet-stream")
MIN_SIDE = 8  # smaller than this is a placeholder or a tracking pixel, not a photo with objects in it
READ_TIMEOUT_S = 60.0  # a client that stops sending mid-upload holds its connection this long at most


class RequestError(Exception):
    """A request the server refuses: HTTP ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())


class ClientGone(Exception):
    """The client closed its connection before its upload was complete: nobody to answer."""


async def read_upload(request: Request, *, max_bytes: int) -> bytes:
    """The image bytes of a ``POST``: a multipart form's ``image`` field (or its one file), or the raw
    body (``Content-Type`` ``image/*``, ``application/octet-stream`` or none)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(int(declared), max_bytes)
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            if content_type == "multipart/form-data":
                return await _form_image(request, max_bytes)
            if content_type and not content_type.startswith(RAW_TYPES):
                raise RequestError(415, f"Content-Type {content_type}: send the image as multipart/form-data (field "
                                        "'image') or as the raw body with an image/* or application/octet-stream type")
            return b"".join([chunk async for chunk in limited(request.stream(), max_bytes)])
    except ClientDisconnect:
        raise ClientGone() from None
    except TimeoutError:
        raise RequestError(408, f"the upload did not arrive within {READ_TIMEOUT_S:g} s") from None


async def limited(stream: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    """``stream``'s chunks, refused with 413 as soon as they add up to more than ``max_bytes``."""
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > max_bytes:
            raise too_large(None, max_bytes)
        yield chunk


def too_large(size: int | None, max_bytes: int) -> RequestError:
    what = f"{size} bytes" if size is not None else "the upload"
    return RequestError(413, f"{what} over the server's limit of {max_bytes} bytes (--max-bytes)")


async def _form_image(request: Request, max_bytes: int) -> bytes:
    parser = MultiPartParser(request.headers, limited(request.stream(), max_bytes), max_files=8, max_fields=32)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise RequestError(400, f"multipart form: {exc.message}") from None
    try:
        files = [(name, value) for name, value in form.multi_items() if isinstance(value, UploadFile)]
        chosen = [value for name, value in files if name == "image"] or [value for _, value in files]
        if len(chosen) != 1:
            raise RequestError(400, f"multipart form with {len(chosen)} files: send one, as the field 'image'")
        return await chosen[0].read()
    finally:
        await form.close()


def decode_image(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Image file bytes (any format Pillow reads, by content) -> ``(H, W, 3)`` uint8 RGB, EXIF rotation
    applied, as ``csrseg predict`` reads files; :class:`RequestError` 400 for what is not a whole
    image or is smaller than :data:`MIN_SIDE`, 413 for one over ``max_pixels``."""
    if not data:
        raise RequestError(400, "empty upload: send an image file")
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        # Pillow refuses at open what is over twice its own limit (179 MP): the server's is the one that
        # decides, so Pillow's is raised to it (only ever raised: another limit in the process still holds)
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # max_pixels decides, below
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise RequestError(413, f"image of {width}x{height} px: over the server's limit of {max_pixels} "
                                        "pixels (--max-pixels)")
            if min(width, height) < MIN_SIDE:
                raise RequestError(400, f"image of {width}x{height} px: at least {MIN_SIDE}x{MIN_SIDE} needed")
            image.load()
            return to_rgb(ImageOps.exif_transpose(image)).copy()
    except Image.DecompressionBombError as exc:  # over twice Pillow's own limit: refused by Pillow at open
        raise RequestError(413, f"image over Pillow's pixel limit: {exc}") from None
    except UnidentifiedImageError:
        raise RequestError(400, "not an image: no format Pillow reads starts this way") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise RequestError(400, f"not a readable image ({type(exc).__name__}: {exc})") from None
