"""Reading a request body within limits, before any of it is trusted.

The size cap holds while the bytes arrive, whatever the transfer encoding (a declared
Content-Length is refused up front; a chunked body is counted as it streams). The JSON parse
bounds the two things a small body can make Python's json spend without limit: nesting depth
(the parser recurses) and number length (int() of thousands of digits is refused or slow).
A number over the limit is kept as a marker and reported with the field that holds it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, AsyncIterator

import numpy as np

from videomar.platform.serving.requests import RequestError

MAX_JSON_DEPTH = 32  # a request body is 3 levels deep; /v1/batches 4
MAX_NUMBER_CHARS = 32  # any seed (< 2**63) fits in 19 digits; floats need fewer
# A JSON string with its escapes, written unrolled so that a long base64 image scans in linear time.
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
OPENERS, CLOSERS = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


JSON_MEDIA_TYPE = "application/json"


def require_json(content_type: str | None) -> None:
    """415 unless the body is declared JSON: a web page cannot send that cross-origin without a
    CORS preflight, which this service never grants, so a page the operator opens cannot POST."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != JSON_MEDIA_TYPE:
        raise RequestError(f"content-type: {media or 'missing'}; send {JSON_MEDIA_TYPE}", status=415)


def too_large(size: int | str, limit: int) -> RequestError:
    return RequestError(f"body: {size} bytes exceeds the limit of {limit}", status=413)


async def read_body(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(declared, limit)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise too_large(f"more than {limit}", limit)
    return bytes(body)


class BadNumber:
    """Stands in for a JSON number the parser refused, so that validation can name its field."""

    def __init__(self, text: str, reason: str):
        self.text, self.reason = text, reason


def _int(text: str) -> int | BadNumber:
    if len(text) > MAX_NUMBER_CHARS:
        return BadNumber(text, f"a number of {len(text)} characters; at most {MAX_NUMBER_CHARS}")
    return int(text)


def _float(text: str) -> float | BadNumber:
    if len(text) > MAX_NUMBER_CHARS:
        return BadNumber(text, f"a number of {len(text)} characters; at most {MAX_NUMBER_CHARS}")
    value = float(text)
    return value if math.isfinite(value) else BadNumber(text, f"{text} is not a finite number")


def _constant(text: str) -> BadNumber:
    return BadNumber(text, f"{text} is not a JSON number")


def json_depth(body: bytes) -> int:
    """Deepest nesting of arrays and objects, counted outside strings."""
    skeleton = np.frombuffer(JSON_STRING.sub(b'""', body), np.uint8)
    steps = np.isin(skeleton, OPENERS).astype(np.int64) - np.isin(skeleton, CLOSERS)
    return int(np.cumsum(steps).max(initial=0))


def parse_json(body: bytes) -> Any:
    """JSON within the depth and number limits; RequestError (422) naming the field otherwise."""
    try:
        text = body.decode("utf-8")  # UTF-8 only, so that the byte scan below sees every bracket
    except UnicodeDecodeError:
        raise RequestError("body: not UTF-8 text") from None
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise RequestError(f"body: JSON nested {depth} deep; at most {MAX_JSON_DEPTH}")
    try:
        data = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:  # a safety net; the depth scan refuses deep bodies first
        raise RequestError(f"body: JSON nested too deep; at most {MAX_JSON_DEPTH}") from None
    except json.JSONDecodeError as err:
        raise RequestError(f"body: malformed JSON: {err}") from None
    _refuse_bad_numbers(data, "")
    return data


def _refuse_bad_numbers(value: Any, where: str) -> None:
    if isinstance(value, BadNumber):
        raise RequestError(f"{where or 'body'}: {value.reason}")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        _refuse_bad_numbers(item, f"{where}.{key}" if where else str(key))
