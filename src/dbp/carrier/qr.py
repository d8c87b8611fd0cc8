"""The QR code of a battery (Regulation (EU) 2023/1542 Art. 77(3), Annex XIII point 1): pure, no I/O.

The code carries the passport's ``uniqueProductIdentifier`` exactly as the passport states it (in the demo a
GS1 Digital Link URL), never the passport id: the identifier is what is printed on the battery for decades,
while the passport behind it may change operator or repository. An identifier that is not an http(s) URL is
still encoded (the carrier carries what the passport says); callers may warn with :func:`is_web_link`.

Every parameter is checked before anything is drawn; a refusal is a :class:`dbp.errors.BadRequest` naming the
parameter, the accepted range and what was given. Data larger than a QR code holds at the chosen
error-correction level (ISO/IEC 18004 table 7: 2953 bytes at L … 1273 at H) is refused the same way, naming
the levels at which it would fit.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import segno
from segno.encoder import DataOverflowError

from dbp.errors import BadRequest, FieldError

SCALE_MIN, SCALE_MAX, SCALE_DEFAULT = 1, 40, 4
BORDER_MIN, BORDER_MAX, BORDER_DEFAULT = 0, 16, 4  # 4 modules: the quiet zone ISO/IEC 18004 requires


class Format(StrEnum):
    svg = "svg"
    png = "png"

    @property
    def media_type(self) -> str:
        return "image/svg+xml" if self is Format.svg else "image/png"


class Ecc(StrEnum):
    """Error-correction level: the share of codewords that may be damaged (L 7 %, M 15 %, Q 25 %, H 30 %)."""

    L = "L"
    M = "M"
    Q = "Q"
    H = "H"


@dataclass(frozen=True)
class QrOptions:
    """What the caller chose; :func:`options` builds it from untrusted strings and numbers."""

    format: Format = Format.svg
    scale: int = SCALE_DEFAULT
    ecc: Ecc = Ecc.M
    border: int = BORDER_DEFAULT


@dataclass(frozen=True)
class QrImage:
    """The encoded image and how it was drawn: ``modules`` is the symbol's width in modules without the
    quiet zone, ``pixels`` the image's width (``(modules + 2 × border) × scale``)."""

    data: bytes
    media_type: str
    version: int
    modules: int
    pixels: int


def refuse(name: str, message: str, rule: str) -> BadRequest:
    """The 400 for a carrier parameter: its name, what was expected and given, the rule (codes and sheets)."""
    return BadRequest(f"{name}: {message}", details=[FieldError(name, rule, message)])


def ecc_of(value: str | None, *, rule: str, default: Ecc = Ecc.M) -> Ecc:
    """The error-correction level written ``value`` (any case); None: ``default``; BadRequest naming ``rule``."""
    if value is None:
        return default
    try:
        return Ecc(value.upper())
    except ValueError:
        raise refuse("ecc", f"expected one of L, M, Q, H, got {value!r}", rule) from None


def options(*, format: str | None = None, scale: int | None = None, ecc: str | None = None,
            border: int | None = None) -> QrOptions:
    """Validated options; None means the default. Raises BadRequest for any value out of range."""
    chosen = QrOptions()
    fmt = chosen.format
    if format is not None:
        try:
            fmt = Format(format.lower())
        except ValueError:
            raise refuse("format", f"expected svg or png, got {format!r}", "qr.format") from None
    level = ecc_of(ecc, rule="qr.ecc", default=chosen.ecc)
    size = chosen.scale if scale is None else scale
    if not SCALE_MIN <= size <= SCALE_MAX:
        raise refuse("scale", f"expected pixels per module {SCALE_MIN}..{SCALE_MAX}, got {size}", "qr.scale")
    quiet = chosen.border if border is None else border
    if not BORDER_MIN <= quiet <= BORDER_MAX:
        raise refuse("border", f"expected a quiet zone of {BORDER_MIN}..{BORDER_MAX} modules, got {quiet}",
                      "qr.border")
    return QrOptions(format=fmt, scale=size, ecc=level, border=quiet)


def is_web_link(identifier: str) -> bool:
    """Whether ``identifier`` is an absolute http(s) URL with a host (what a phone opens when scanning)."""
    try:
        parts = urlsplit(identifier)
    except ValueError:
        return False
    return parts.scheme in ("https", "http") and bool(parts.hostname)


def symbol(identifier: str, ecc: Ecc) -> segno.QRCode:
    """The QR symbol of ``identifier`` at level ``ecc`` (never raised); BadRequest when empty or too large."""
    if not identifier:
        raise refuse("uniqueProductIdentifier", "the passport has no product identifier to encode",
                      "qr.empty")
    # Non-ASCII text is UTF-8 announced by an ECI header (ISO/IEC 18004 §6.4.2): without it readers guess
    # the character set (zbar reads UTF-8 bytes as Shift JIS). ASCII needs no ECI.
    encoding = None if identifier.isascii() else "utf-8"
    return _make(identifier, ecc, encoding)


def _make(identifier: str, ecc: Ecc, encoding: str | None) -> segno.QRCode:
    try:
        # boost_error=False: the level is the caller's choice, never silently raised.
        return segno.make_qr(identifier, error=ecc.value, boost_error=False, encoding=encoding,
                             eci=encoding is not None)
    except DataOverflowError:
        fits = [lvl.value for lvl in Ecc if _fits(identifier, lvl, encoding)]
        hint = f"it fits at level {', '.join(fits)}" if fits else "it fits at no level"
        size = len(identifier.encode("utf-8"))
        raise refuse("ecc", f"the product identifier ({size} bytes) exceeds a QR code's capacity at level "
                             f"{ecc.value}; {hint}", "qr.capacity") from None


def _fits(identifier: str, ecc: Ecc, encoding: str | None) -> bool:
    try:
        segno.make_qr(identifier, error=ecc.value, boost_error=False, encoding=encoding, eci=encoding is not None)
    except DataOverflowError:
        return False
    return True


_VIEWBOX = re.compile(rb'viewBox="0 0 (\d+) (\d+)"')


def encode(identifier: str, opts: QrOptions) -> QrImage:
    """Draw ``identifier`` as a QR code (dark modules black on white, quiet zone included).

    SVG carries ``width``/``height`` in pixels and a ``viewBox`` of the same size, so it prints at the chosen
    scale and scales without loss; its ``<title>`` is the identifier (human-readable, for accessibility).
    """
    qr = symbol(identifier, opts.ecc)
    modules = int(qr.symbol_size(scale=1, border=0)[0])
    pixels = (modules + 2 * opts.border) * opts.scale
    buf = io.BytesIO()
    if opts.format is Format.png:
        qr.save(buf, kind="png", scale=opts.scale, border=opts.border, dark="#000", light="#fff")
        data = buf.getvalue()
    else:
        qr.save(buf, kind="svg", scale=opts.scale, border=opts.border, dark="#000", light="#fff",
                omitsize=True, title=identifier, xmldecl=True, encoding="utf-8")
        data = _VIEWBOX.sub(lambda m: b'width="%s" height="%s" %s' % (m[1], m[2], m[0]), buf.getvalue(), count=1)
    return QrImage(data=data, media_type=opts.format.media_type, version=int(qr.version), modules=modules,
                   pixels=pixels)
