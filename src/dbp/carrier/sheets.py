"""Printable label sheets for a batch of batteries (Art. 77(3), Annex XIII point 1): pure, no I/O.

Each label carries one QR code of a passport's ``uniqueProductIdentifier`` (:mod:`dbp.carrier.qr`'s rules: the
link exactly as the passport states it, UTF-8 with an ECI header when not ASCII, the chosen error-correction
level never raised) and human-readable caption lines under or beside it. Three outputs:

- :func:`svg_pages`: one SVG document per page (units: millimetres, ``viewBox`` of the page size);
- :func:`pdf`: one multi-page PDF (reportlab; codes are vector rectangles, text is Helvetica);
- :func:`zip_files`: one file per battery (an SVG label, or a PNG of the bare code) plus ``manifest.csv``.

Codes are drawn as filled rectangles built from segno's module matrix, never as embedded raster images, so a
print is as sharp as the printer. Every code on a sheet has the same physical size (``codeSize`` or the largest
that leaves the caption room); a code whose modules would come out smaller than :data:`MODULE_MIN_MM` is refused
rather than printed unreadable.

Captions never leave their label: lines are wrapped (preferably after ``/ - _ . : ? & = #`` or a space, else
anywhere), the font shrinks from ``fontSize`` down to :data:`FONT_MIN_PT`, and what still does not fit is cut
with an ellipsis (the first line, normally the identifier, keeps priority). Widths are Helvetica's metrics;
SVG text additionally states ``textLength`` (so a viewer that substitutes another font squeezes the line to the
measured width) and each label is a nested ``<svg>`` that clips its content. Control characters and characters
XML forbids are shown as U+FFFD; in the PDF, characters outside Helvetica's Latin set (WinAnsi) print as a box
— the code itself always carries the exact identifier.

Every option is checked before anything is drawn; a refusal is a :class:`dbp.errors.BadRequest` naming the
parameter, the accepted range and the value given. A batch holds 1..:data:`MAX_LABELS` labels.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from xml.sax.saxutils import escape, quoteattr

from reportlab.lib.pagesizes import A4, LETTER
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from dbp.carrier import qr
from dbp.csvcells import formula_safe
from dbp.errors import BadRequest

MAX_LABELS = 5000  # one request or command; ~5000 labels render in well under a minute (about 210 A4 pages)
MODULE_MIN_MM = 0.25  # ~10 mil: below this office printers blur modules together and phones misread

COLUMNS_MIN, COLUMNS_MAX, COLUMNS_DEFAULT = 1, 12, 3
ROWS_MIN, ROWS_MAX, ROWS_DEFAULT = 1, 40, 8
MARGIN_MIN, MARGIN_MAX, MARGIN_DEFAULT = 0.0, 50.0, 10.0  # mm, page edge to the first label
GAP_MIN, GAP_MAX, GAP_DEFAULT = 0.0, 20.0, 2.0  # mm between labels
CODE_MIN, CODE_MAX = 5.0, 250.0  # mm, side of the code including its quiet zone
FONT_MIN_PT, FONT_MAX_PT, FONT_DEFAULT_PT = 4.0, 16.0, 7.0
BORDER_MIN, BORDER_MAX, BORDER_DEFAULT = 2, 16, qr.BORDER_DEFAULT  # quiet zone, modules (4 = ISO/IEC 18004)
SCALE_MIN, SCALE_MAX, SCALE_DEFAULT = qr.SCALE_MIN, qr.SCALE_MAX, 8  # PNG files of the ZIP: pixels per module

FONT = "Helvetica"
SVG_FONT = "Helvetica, Arial, 'Liberation Sans', 'Nimbus Sans', sans-serif"  # Helvetica's metrics
LEADING = 1.25  # line height / font size
PT = 25.4 / 72  # mm per point
CAPTION_MIN_W = 12.0  # mm: narrower captions are useless
CAPTION_MIN_LINES = 2


class Page(StrEnum):
    a4 = "a4"
    letter = "letter"

    @property
    def size_mm(self) -> tuple[float, float]:
        w, h = A4 if self is Page.a4 else LETTER
        return round(w / 72 * 25.4, 1), round(h / 72 * 25.4, 1)


class FileKind(StrEnum):
    """What the ZIP holds per battery: the label as SVG (code and caption) or the bare code as PNG."""

    svg = "svg"
    png = "png"


@dataclass(frozen=True)
class Label:
    """One battery: the link its code carries, the caption lines printed with it, and its passport id (for the
    ZIP's manifest)."""

    link: str
    caption: tuple[str, ...]
    dpp_id: str = ""


@dataclass(frozen=True)
class SheetOptions:
    page: Page = Page.a4
    columns: int = COLUMNS_DEFAULT
    rows: int = ROWS_DEFAULT
    margin: float = MARGIN_DEFAULT
    gap: float = GAP_DEFAULT
    code_size: float | None = None  # None: the largest that leaves the caption room
    font_size: float = FONT_DEFAULT_PT
    ecc: qr.Ecc = qr.Ecc.M
    border: int = BORDER_DEFAULT

    @property
    def per_page(self) -> int:
        return self.columns * self.rows


@dataclass(frozen=True)
class Geometry:
    """Where things go on a label (mm, origin top-left of the label). ``side`` is the code with its quiet zone;
    ``beside`` says the caption is right of the code (wide labels) rather than under it."""

    page_w: float
    page_h: float
    cell_w: float
    cell_h: float
    side: float
    code_x: float
    code_y: float
    cap_x: float
    cap_y: float
    cap_w: float
    cap_h: float
    beside: bool

    def cell_origin(self, opts: SheetOptions, slot: int) -> tuple[float, float]:
        row, col = divmod(slot, opts.columns)
        return opts.margin + col * (self.cell_w + opts.gap), opts.margin + row * (self.cell_h + opts.gap)


def _num(name: str, value: float | None, lo: float, hi: float, default: float, what: str) -> float:
    v = default if value is None else value
    if not (isinstance(v, int | float) and math.isfinite(v) and lo <= v <= hi):
        raise qr.refuse(name, f"expected {what} {lo:g}..{hi:g}, got {value}", f"labels.{name}")
    return float(v)


def _int(name: str, value: int | None, lo: int, hi: int, default: int, what: str) -> int:
    v = default if value is None else value
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise qr.refuse(name, f"expected {what} {lo}..{hi}, got {value}", f"labels.{name}")
    return v


def options(*, page: str | None = None, columns: int | None = None, rows: int | None = None,
            margin: float | None = None, gap: float | None = None, code_size: float | None = None,
            font_size: float | None = None, ecc: str | None = None, border: int | None = None) -> SheetOptions:
    """Validated sheet options (None = default); the label geometry is checked too (:func:`geometry`).
    Raises BadRequest naming the parameter (``page``, ``columns``, ``rows``, ``margin``, ``gap``, ``codeSize``,
    ``fontSize``, ``ecc``, ``border``), its range and the value given."""
    size = Page.a4
    if page is not None:
        try:
            size = Page(page.lower())
        except ValueError:
            raise qr.refuse("page", f"expected a4 or letter, got {page!r}", "labels.page") from None
    level = qr.ecc_of(ecc, rule="labels.ecc")
    opts = SheetOptions(
        page=size,
        columns=_int("columns", columns, COLUMNS_MIN, COLUMNS_MAX, COLUMNS_DEFAULT, "labels across a page"),
        rows=_int("rows", rows, ROWS_MIN, ROWS_MAX, ROWS_DEFAULT, "labels down a page"),
        margin=_num("margin", margin, MARGIN_MIN, MARGIN_MAX, MARGIN_DEFAULT, "a page margin in mm"),
        gap=_num("gap", gap, GAP_MIN, GAP_MAX, GAP_DEFAULT, "a gap between labels in mm"),
        code_size=None if code_size is None else _num("codeSize", code_size, CODE_MIN, CODE_MAX, 0,
                                                      "a code size (quiet zone included) in mm"),
        font_size=_num("fontSize", font_size, FONT_MIN_PT, FONT_MAX_PT, FONT_DEFAULT_PT, "a caption size in pt"),
        ecc=level,
        border=_int("border", border, BORDER_MIN, BORDER_MAX, BORDER_DEFAULT, "a quiet zone in modules"),
    )
    geometry(opts)
    return opts


def file_kind(value: str | None) -> FileKind:
    if value is None:
        return FileKind.svg
    try:
        return FileKind(value.lower())
    except ValueError:
        raise qr.refuse("files", f"expected svg or png, got {value!r}", "labels.files") from None


def png_scale(value: int | None) -> int:
    return _int("scale", value, SCALE_MIN, SCALE_MAX, SCALE_DEFAULT, "pixels per module")


def geometry(opts: SheetOptions) -> Geometry:
    """The label layout; BadRequest when the page, margins and grid leave no room for a readable code and a
    caption (naming the parameter to change)."""
    page_w, page_h = opts.page.size_mm
    cell_w = (page_w - 2 * opts.margin - (opts.columns - 1) * opts.gap) / opts.columns
    cell_h = (page_h - 2 * opts.margin - (opts.rows - 1) * opts.gap) / opts.rows
    if cell_w < 10 or cell_h < 10:
        raise qr.refuse("columns" if cell_w < 10 else "rows",
                      f"{opts.columns} × {opts.rows} labels with margin {opts.margin:g} mm and gap {opts.gap:g} mm "
                      f"on {opts.page.value} are {cell_w:.1f} × {cell_h:.1f} mm; a label needs at least 10 × 10 mm",
                      "labels.size")
    pad = min(2.0, min(cell_w, cell_h) * 0.05)
    cap_min_h = CAPTION_MIN_LINES * FONT_MIN_PT * PT * LEADING
    beside = cell_w >= 1.25 * cell_h
    if beside:
        hard = min(cell_h - 2 * pad, cell_w - 3 * pad - CAPTION_MIN_W)
        side = min(cell_h - 2 * pad, 0.55 * (cell_w - 3 * pad))
    else:
        hard = min(cell_w - 2 * pad, cell_h - 3 * pad - cap_min_h)
        side = min(cell_w - 2 * pad, 0.7 * (cell_h - 3 * pad))
    if opts.code_size is not None:
        if opts.code_size > hard:
            raise qr.refuse("codeSize", f"labels of {cell_w:.1f} × {cell_h:.1f} mm hold a code of at most "
                                      f"{max(hard, 0):.1f} mm beside its caption, got {opts.code_size:g}",
                          "labels.codeSize")
        side = opts.code_size
    if side < CODE_MIN:
        raise qr.refuse("rows" if not beside else "columns",
                      f"labels of {cell_w:.1f} × {cell_h:.1f} mm leave no room for a code of at least "
                      f"{CODE_MIN:g} mm and a caption; use fewer columns or rows, or smaller margins",
                      "labels.size")
    if beside:
        code_x, code_y = pad, (cell_h - side) / 2
        cap_x, cap_y, cap_w, cap_h = 2 * pad + side, pad, cell_w - 3 * pad - side, cell_h - 2 * pad
    else:
        code_x, code_y = (cell_w - side) / 2, pad
        cap_x, cap_y, cap_w, cap_h = pad, 2 * pad + side, cell_w - 2 * pad, cell_h - 3 * pad - side
    return Geometry(page_w, page_h, cell_w, cell_h, side, code_x, code_y, cap_x, cap_y, cap_w, cap_h, beside)


# ------------------------------------------------------------------------------ batch, captions


def check_batch(labels: Sequence[Label]) -> None:
    """BadRequest unless 1..MAX_LABELS labels."""
    if not labels:
        raise qr.refuse("selection", "no labels to print", "labels.empty")
    if len(labels) > MAX_LABELS:
        raise qr.refuse("selection", f"expected at most {MAX_LABELS} labels in one sheet, got {len(labels)}; "
                                   "split the batch (by model, or by lists of dppId)", "labels.max")


_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def printable(text: str) -> str:
    """``text`` with control characters, lone surrogates and XML-forbidden characters shown as U+FFFD."""
    return _UNSAFE.sub("\ufffd", text)


_BREAK_AFTER = re.compile(r"[^/\-_.:?&=# ]*[/\-_.:?&=# ]?")


def _width(text: str, size: float) -> float:
    """Width in mm of ``text`` in Helvetica at ``size`` pt."""
    return float(stringWidth(text, FONT, size)) * PT


def _wrap(text: str, width: float, size: float) -> list[str]:
    """Greedy wrap at preferred breaks, hard-breaking any token wider than a line (at least one character a
    line, so it always ends)."""
    lines: list[str] = []
    line = ""
    for token in _BREAK_AFTER.findall(text):
        if not token:
            continue
        if _width((line + token).rstrip(), size) <= width:
            line += token
            continue
        if line.strip():
            lines.append(line.rstrip())
        line = token
        while _width(line.rstrip(), size) > width:
            lo, hi = 1, len(line) - 1  # the longest prefix that fits, by bisection
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if _width(line[:mid], size) <= width:
                    lo = mid
                else:
                    hi = mid - 1
            lines.append(line[:lo])
            line = line[lo:]
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _ellipsis(line: str, width: float, size: float) -> str:
    while line and _width(line + "…", size) > width:
        line = line[:-1]
    return line + "…"


def fit_caption(caption: Sequence[str], width: float, height: float, max_pt: float) -> tuple[float, list[str]]:
    """(font size in pt, lines) of ``caption`` wrapped into ``width`` × ``height`` mm: the largest size from
    ``max_pt`` down to FONT_MIN_PT (half-point steps) at which every line fits; otherwise FONT_MIN_PT with the
    lines that do not fit dropped and the last one kept ending in an ellipsis. Every returned line is at most
    ``width`` wide and the block at most ``height`` high."""
    texts = [printable(c) for c in caption if c]
    size = max_pt
    while True:
        lines = [w for t in texts for w in _wrap(t, width, size)]
        if len(lines) * size * PT * LEADING <= height + 1e-9 or size <= FONT_MIN_PT:
            break
        size = max(FONT_MIN_PT, size - 0.5)
    room = int((height + 1e-9) // (size * PT * LEADING))
    if len(lines) > room:
        lines = lines[:room]
        if lines:
            lines[-1] = _ellipsis(lines[-1], width, size)
    return size, lines


# ------------------------------------------------------------------------------ drawing primitives


@dataclass(frozen=True)
class _Prepared:
    label: Label
    rects: list[tuple[int, int, int, int]]  # dark areas (x, y, w, h) in modules, quiet zone included
    module: float  # mm per module
    font: float  # pt
    lines: list[str]


_DARK = re.compile(b"\x01+")


def dark_rects(matrix: Sequence[bytes | bytearray], border: int) -> list[tuple[int, int, int, int]]:
    """The dark modules of ``matrix`` as rectangles (x, y, w, h), runs of a row merged with identical runs of
    the rows below; offsets include the quiet zone of ``border`` modules."""
    out: list[tuple[int, int, int, int]] = []
    open_: dict[tuple[int, int], list[int]] = {}
    for y, row in enumerate(matrix):
        runs = {(m.start(), m.end() - m.start()) for m in _DARK.finditer(bytes(row))}
        for key in [k for k in open_ if k not in runs]:
            y0, h = open_.pop(key)
            out.append((key[0] + border, y0 + border, key[1], h))
        for key in runs:
            if key in open_:
                open_[key][1] += 1
            else:
                open_[key] = [y, 1]
    out.extend((k[0] + border, v[0] + border, k[1], v[1]) for k, v in open_.items())
    out.sort(key=lambda r: (r[1], r[0]))
    return out


def _prepare(labels: Sequence[Label], opts: SheetOptions, geo: Geometry,
             progress: Callable[[int], None] | None = None) -> list[_Prepared]:
    check_batch(labels)
    out = []
    for i, label in enumerate(labels):
        try:
            symbol = qr.symbol(label.link, opts.ecc)
        except BadRequest as exc:
            raise BadRequest(f"label {i + 1} ({printable(label.link)[:120]}): {exc.message}",
                             details=exc.details) from None
        modules = len(symbol.matrix)
        module = geo.side / (modules + 2 * opts.border)
        if module < MODULE_MIN_MM:
            raise qr.refuse("codeSize", f"the code of label {i + 1} has {modules} modules plus a quiet zone of "
                                      f"{opts.border}: at {geo.side:.1f} mm its modules would be {module:.2f} mm, "
                                      f"below {MODULE_MIN_MM} mm; use a larger codeSize, fewer columns or rows, "
                                      "a lower ecc or a smaller border", "labels.moduleSize")
        size, lines = fit_caption(label.caption, geo.cap_w, geo.cap_h, opts.font_size)
        out.append(_Prepared(label, dark_rects(symbol.matrix, opts.border), module, size, lines))
        if progress is not None:
            progress(i + 1)
    return out


def _f(v: float) -> str:
    s = f"{v:.3f}".rstrip("0").rstrip(".")
    return s if s not in ("-0", "") else "0"


# ------------------------------------------------------------------------------ SVG


def _svg_label(p: _Prepared, geo: Geometry, x: float, y: float, *, nested: bool) -> str:
    """One label as SVG markup in mm; ``nested``: a child ``<svg>`` at (x, y) that clips its content."""
    parts = []
    if nested:
        parts.append(f'<svg class="label" x="{_f(x)}" y="{_f(y)}" width="{_f(geo.cell_w)}" '
                     f'height="{_f(geo.cell_h)}" viewBox="0 0 {_f(geo.cell_w)} {_f(geo.cell_h)}" overflow="hidden">')
    parts.append(f"<title>{escape(printable(p.label.link))}</title>")
    d = "".join(f"M{x0} {y0}h{w}v{h}h-{w}z" for x0, y0, w, h in p.rects)
    # no shape-rendering="crispEdges": snapping each rectangle to screen pixels separately made modules
    # uneven, and zbar missed about one code in twelve pages rendered by chromium; printers ignore it anyway
    parts.append(f'<path class="code" fill="#000" '
                 f'transform="translate({_f(geo.code_x)} {_f(geo.code_y)}) scale({p.module:.6f})" d="{d}"/>')
    size_mm = p.font * PT
    anchor = "start" if geo.beside else "middle"
    tx = geo.cap_x if geo.beside else geo.cap_x + geo.cap_w / 2
    for i, line in enumerate(p.lines):
        baseline = geo.cap_y + i * size_mm * LEADING + size_mm
        width = _width(line, p.font)
        parts.append(f'<text x="{_f(tx)}" y="{_f(baseline)}" font-family={quoteattr(SVG_FONT)} '
                     f'font-size="{_f(size_mm)}" text-anchor="{anchor}" textLength="{_f(width)}" '
                     f'lengthAdjust="spacingAndGlyphs">{escape(line)}</text>')
    if nested:
        parts.append("</svg>")
    return "".join(parts)


def svg_pages(labels: Sequence[Label], opts: SheetOptions,
              progress: Callable[[int], None] | None = None) -> list[bytes]:
    """One UTF-8 SVG document per page, labels row by row in the given order."""
    geo = geometry(opts)
    prepared = _prepare(labels, opts, geo, progress)
    count = math.ceil(len(prepared) / opts.per_page)
    pages = []
    for n in range(count):
        chunk = prepared[n * opts.per_page:(n + 1) * opts.per_page]
        body = "".join(_svg_label(p, geo, *geo.cell_origin(opts, slot), nested=True) for slot, p in enumerate(chunk))
        pages.append(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_f(geo.page_w)}mm" height="{_f(geo.page_h)}mm" '
            f'viewBox="0 0 {_f(geo.page_w)} {_f(geo.page_h)}">'
            f"<title>Battery passport labels, page {n + 1} of {count}</title>"
            f'<rect width="{_f(geo.page_w)}" height="{_f(geo.page_h)}" fill="#fff"/>{body}</svg>\n'
            .encode())
    return pages


def svg_label(p: _Prepared, geo: Geometry) -> bytes:
    """One label as a stand-alone SVG document of the label's size."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_f(geo.cell_w)}mm" height="{_f(geo.cell_h)}mm" '
            f'viewBox="0 0 {_f(geo.cell_w)} {_f(geo.cell_h)}">'
            f'<rect width="{_f(geo.cell_w)}" height="{_f(geo.cell_h)}" fill="#fff"/>'
            f"{_svg_label(p, geo, 0, 0, nested=False)}</svg>\n").encode()


# ------------------------------------------------------------------------------ PDF


def pdf(labels: Sequence[Label], opts: SheetOptions, *, title: str = "Battery passport labels",
        progress: Callable[[int], None] | None = None) -> bytes:
    """One PDF, one page per ``opts.per_page`` labels; byte-identical for identical input (reportlab's
    invariant mode: no creation date, fixed document id)."""
    geo = geometry(opts)
    prepared = _prepare(labels, opts, geo, progress)
    buf = io.BytesIO()
    mm = 72 / 25.4
    page_h_pt = geo.page_h * mm
    c = Canvas(buf, pagesize=(geo.page_w * mm, page_h_pt), invariant=1, pageCompression=1)
    c.setTitle(printable(title))
    c.setCreator("dbp (EU Digital Battery Passport)")
    c.setSubject("QR codes of uniqueProductIdentifier (Regulation (EU) 2023/1542 Annex XIII point 1)")
    for n in range(0, len(prepared), opts.per_page):
        for slot, p in enumerate(prepared[n:n + opts.per_page]):
            x, y = geo.cell_origin(opts, slot)
            c.saveState()
            c.setFillGray(0)
            # a coordinate system in modules, y downwards, with its origin at the code's top-left corner
            c.translate((x + geo.code_x) * mm, page_h_pt - (y + geo.code_y) * mm)
            c.scale(p.module * mm, -p.module * mm)
            c.addLiteral("\n".join(f"{x0} {y0} {w} {h} re" for x0, y0, w, h in p.rects) + "\nf")
            c.restoreState()
            c.setFont(FONT, p.font)
            size_mm = p.font * PT
            for i, line in enumerate(p.lines):
                baseline = (y + geo.cap_y + i * size_mm * LEADING + size_mm) * mm
                if geo.beside:
                    c.drawString((x + geo.cap_x) * mm, page_h_pt - baseline, line)
                else:
                    c.drawCentredString((x + geo.cap_x + geo.cap_w / 2) * mm, page_h_pt - baseline, line)
        c.showPage()
    c.save()
    return buf.getvalue()


# ------------------------------------------------------------------------------ ZIP

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same batch gives the same bytes
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
NAME_MAX = 120


def file_stem(index: int, link: str) -> str:
    """A portable file name stem for label ``index`` (1-based): the number (unique within the ZIP), then the
    identifier without its scheme, every run of characters other than ``A-Z a-z 0-9 . _ -`` as one ``_``, no
    leading dots; cut to NAME_MAX characters with a hash of the identifier when longer. Never contains a path
    separator, so never escapes the directory it is extracted to."""
    body = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*:(//)?", "", link)
    body = _NAME_UNSAFE.sub("_", body).strip("._") or "label"
    stem = f"{index:04d}_{body}"
    if len(stem) > NAME_MAX:
        digest = hashlib.sha256(link.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        stem = f"{stem[:NAME_MAX - 13]}_{digest}"
    return stem


def _cell(value: str) -> str:
    """A manifest cell: printable, and a leading formula character quoted (OWASP CSV injection)."""
    return formula_safe(printable(value))


def _zip_add(z: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    z.writestr(info, data)


def zip_files(labels: Sequence[Label], opts: SheetOptions, *, files: FileKind = FileKind.svg,
              scale: int = SCALE_DEFAULT, progress: Callable[[int], None] | None = None) -> bytes:
    """A ZIP of one file per label — ``svg``: the label (code and caption) at the label size of ``opts``;
    ``png``: the bare code at ``scale`` pixels per module with ``opts.border`` modules of quiet zone — and
    ``manifest.csv`` (``file,uniqueProductIdentifier,dppId,caption``; the caption's lines joined by `` | ``)."""
    geo = geometry(opts)
    prepared = _prepare(labels, opts, geo, progress)
    png = qr.QrOptions(format=qr.Format.png, scale=png_scale(scale), ecc=opts.ecc, border=opts.border)
    manifest = io.StringIO()
    writer = csv.writer(manifest, lineterminator="\r\n")
    writer.writerow(["file", "uniqueProductIdentifier", "dppId", "caption"])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, p in enumerate(prepared, start=1):
            name = f"{file_stem(i, p.label.link)}.{files.value}"
            data = svg_label(p, geo) if files is FileKind.svg else qr.encode(p.label.link, png).data
            _zip_add(z, name, data)
            writer.writerow([name, _cell(p.label.link), _cell(p.label.dpp_id),
                             _cell(" | ".join(p.label.caption))])
        _zip_add(z, "manifest.csv", manifest.getvalue().encode("utf-8"))
    return buf.getvalue()


def pages_zip(pages: Sequence[bytes]) -> bytes:
    """SVG pages as ``page-001.svg``, ``page-002.svg``… in one ZIP."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, page in enumerate(pages, start=1):
            _zip_add(z, f"page-{n:03d}.svg", page)
    return buf.getvalue()
