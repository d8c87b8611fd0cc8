"""Label sheets of a batch (``GET /api/v1/qr/labels``, ``dbp qr-labels``, :mod:`dbp.carrier.sheets`).

Every code of every generated page and file is read back by a real QR reader (Debian's ``zbarimg``): PDF pages
rasterised by PDFium (pypdfium2), SVG pages and labels rendered by Debian's chromium (Playwright), PNG files as
they are. The decoded links must be exactly the batch's product identifiers, and the captions must be there as
text (PDF text extraction, SVG ``<text>`` elements), inside their labels.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import random
import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pypdfium2 as pdfium
import pytest
from PIL import Image
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy import text
from typer.testing import CliRunner

from conftest import ServerThread, assert_error, settle_access_log
from dbp.carrier import qr, service, sheets
from dbp.cli import app as cli
from dbp.config import Settings
from dbp.errors import BadRequest, NotFound

SVG_NS = "{http://www.w3.org/2000/svg}"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LABELS = "/api/v1/qr/labels"


# ------------------------------------------------------------------------------ readers


def decode_all(image: bytes, tmp_path: Path, name: str = "sheet.png") -> list[str]:
    """Every code a real QR reader finds in the PNG ``image`` (fails, never skips, when the reader is missing)."""
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        pytest.fail("zbarimg is missing: run scripts/ensure-zbar (Debian zbar-tools)", pytrace=False)
    # zbar now and then misses one code of a sheet of many at one resolution: the image is also read enlarged by
    # half, and the reading that finds more codes counts (each is one whole pass of the reader over one image)
    readings = []
    for factor in (1.0, 1.5):
        picture: Image.Image = Image.open(io.BytesIO(image))
        if factor != 1.0:
            picture = picture.resize((int(picture.width * factor), int(picture.height * factor)),
                                     Image.Resampling.NEAREST)
        path = tmp_path / f"{factor}-{name}"
        picture.save(path, format="PNG")
        done = subprocess.run([zbarimg, "--raw", "-q", str(path)], capture_output=True, timeout=120)
        readings.append(done.stdout.decode("utf-8").splitlines() if done.returncode == 0 else [])
    best = max(readings, key=len)
    assert best, "zbarimg found no code in the image at either resolution"
    return best


def pdf_pages(data: bytes) -> list[tuple[bytes, str]]:
    """(PNG at 216 dpi, extracted text) of each page of a PDF."""
    doc = pdfium.PdfDocument(data)
    out = []
    for i in range(len(doc)):
        page = doc[i]
        buf = io.BytesIO()
        page.render(scale=3).to_pil().save(buf, format="PNG")
        out.append((buf.getvalue(), page.get_textpage().get_text_range()))
    doc.close()
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run scripts/ensure-chromium (Debian chromium)", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def render_svg(browser: Browser, svg: bytes) -> tuple[bytes, list[dict[str, Any]]]:
    """A PNG of the SVG document as chromium draws it (3 device pixels per CSS pixel), and for each label's
    caption line its box in the label's own coordinates (mm) with the label's size."""
    page = browser.new_page(device_scale_factor=3)
    try:
        page.set_content("<!doctype html><html><body style='margin:0;background:#fff'>"
                         + svg.decode("utf-8").split("?>", 1)[1] + "</body></html>")
        size = page.evaluate("(() => { const r = document.querySelector('svg').getBoundingClientRect();"
                             " return [Math.ceil(r.width), Math.ceil(r.height)]; })()")
        page.set_viewport_size({"width": size[0], "height": size[1]})
        boxes: list[dict[str, Any]] = page.evaluate("""() => [...document.querySelectorAll('text')].map(t => {
            const b = t.getBBox(); const label = t.closest('svg');
            const vb = label.viewBox.baseVal;
            return {text: t.textContent, x: b.x, y: b.y, w: b.width, h: b.height, cw: vb.width, ch: vb.height};
        })""")
        return page.screenshot(full_page=True), boxes
    finally:
        page.close()


def joined(text_: str) -> str:
    return re.sub(r"[\r\n]+", "", text_)


# ------------------------------------------------------------------------------ data


def create(client: httpx.Client, doc: dict[str, Any]) -> str:
    r = client.post("/api/v1/dpps", json=doc)
    assert r.status_code == 201, r.text
    dpp_id: str = r.json()["dppId"]
    return dpp_id


def make_batch(client: httpx.Client, passport: dict[str, Any], n: int, *, batch: str | None = None,
               operator: str | None = None, model: str | None = None) -> tuple[str, dict[str, str]]:
    """``n`` passports of one new batch: (batch number, {uniqueProductIdentifier: dppId})."""
    batch = batch or f"LBL-{uuid.uuid4().hex[:8]}"
    prefix = passport["uniqueProductIdentifier"].rsplit("/21/", 1)[0]
    made = {}
    for i in range(n):
        doc = copy.deepcopy(passport)
        serial = re.sub("[^A-Za-z0-9]", "", f"{batch}X{i:03d}")
        doc["uniqueProductIdentifier"] = f"{prefix}/21/{serial}"
        gpi = doc["generalProductInformation"]
        gpi["batchNumber"], gpi["serialNumber"] = batch, serial
        if model is not None:
            gpi["batteryModelIdentifier"] = model
        if operator is not None:
            doc["economicOperatorId"] = operator
        made[doc["uniqueProductIdentifier"]] = create(client, doc)
    return batch, made


@pytest.fixture()
def batch8(client: httpx.Client, passport: dict[str, Any]) -> tuple[str, dict[str, str], str]:
    batch, made = make_batch(client, passport, 8)
    return batch, made, passport["generalProductInformation"]["batteryModelIdentifier"]


def token_for(server: ServerThread, session_factory: Any, *, operator_id: str) -> dict[str, str]:
    """Authorization headers of a new economic operator's API client (its own organisation, nobody's agent);
    ``operator_id`` may be an operator whose organisation already exists (then its client)."""
    from dbp.access import service as access
    from dbp.access.principal import Role
    from dbp.errors import NotFound as Missing

    with session_factory.begin() as s:
        try:
            org = access.org_by_ref(s, ref=operator_id)
        except Missing:
            org = access.create_org(s, name=f"Operator {operator_id}", operator_id=operator_id,
                                    role=Role.economic_operator)
        issued = access.create_client(s, org_id=org.id, role=Role.economic_operator)
    r = httpx.post(f"{server.base_url}/api/v1/auth/token", data={
        "grant_type": "client_credentials", "client_id": issued.client_id, "client_secret": issued.client_secret})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


# ------------------------------------------------------------------------------ PDF, SVG, ZIP over HTTP


def test_pdf_sheet_every_code_decodes_and_captions_are_text(client: httpx.Client, batch8: tuple[str, dict[str, str],
                                                                                                 str],
                                                            tmp_path: Path) -> None:
    batch, made, model = batch8
    r = client.get(LABELS, params={"batch": batch, "columns": 2, "rows": 3})  # 6 a page: 2 pages
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF-")
    assert r.headers["content-disposition"] == f'attachment; filename="labels-{batch}.pdf"'
    assert r.headers["x-label-count"] == "8" and "no-store" in r.headers["cache-control"]
    pages = pdf_pages(r.content)
    assert len(pages) == 2
    ordered = sorted(made)
    decoded: list[str] = []
    for n, (png, page_text) in enumerate(pages):
        on_page = decode_all(png, tmp_path, f"page{n}.png")
        assert sorted(on_page) == ordered[n * 6:(n + 1) * 6]  # ordered by product identifier, 6 a page
        decoded += on_page
        flat = joined(page_text)
        for link in ordered[n * 6:(n + 1) * 6]:
            assert link in flat  # the identifier as text (wrapped over lines)
        assert flat.count(f"Batch {batch}") == len(on_page) and flat.count(f"Model {model}") == len(on_page)
    assert sorted(decoded) == ordered and len(set(decoded)) == 8
    for dpp_id in made.values():
        assert dpp_id not in r.text  # the link, never the passport id


def test_pdf_letter_with_a_fixed_code_size_and_level_h(client: httpx.Client, batch8: tuple[str, dict[str, str], str],
                                                       tmp_path: Path) -> None:
    batch, made, _ = batch8
    r = client.get(LABELS, params={"batch": batch, "page": "letter", "columns": 4, "rows": 10, "codeSize": 20,
                                   "ecc": "H", "fontSize": 5, "margin": 6.35, "gap": 0, "border": 4})
    assert r.status_code == 200, r.text
    [(png, _)] = pdf_pages(r.content)
    doc = pdfium.PdfDocument(r.content)
    w, h = doc[0].get_size()
    assert (round(w), round(h)) == (612, 792)  # US Letter in points
    assert sorted(decode_all(png, tmp_path)) == sorted(made)


@pytest.mark.browser
def test_svg_page_in_chromium_every_code_decodes_and_text_stays_in_its_label(
        client: httpx.Client, browser: Browser, batch8: tuple[str, dict[str, str], str], tmp_path: Path) -> None:
    batch, made, model = batch8
    r = client.get(LABELS, params={"batch": batch, "format": "svg"})  # 3 × 8: one page
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert r.headers["content-disposition"] == f'attachment; filename="labels-{batch}.svg"'
    root = ET.fromstring(r.content)
    assert root.get("width") == "210mm" and root.get("height") == "297mm" and root.get("viewBox") == "0 0 210 297"
    labels = root.findall(f"{SVG_NS}svg")
    assert sorted(lbl.findtext(f"{SVG_NS}title") or "" for lbl in labels) == sorted(made)
    for lbl in labels:
        caption = "".join(t.text or "" for t in lbl.findall(f"{SVG_NS}text"))  # wrapped: spaces at breaks go
        link = lbl.findtext(f"{SVG_NS}title") or ""
        assert caption.replace(" ", "") == f"{link}Model {model}Batch {batch}".replace(" ", "")
    png, boxes = render_svg(browser, r.content)
    assert sorted(decode_all(png, tmp_path)) == sorted(made)
    assert len(boxes) >= 8 * 3
    for b in boxes:  # chromium's own text boxes lie inside the label (0.05 mm for rounding)
        assert b["x"] >= -0.05 and b["y"] >= -0.05, b
        assert b["x"] + b["w"] <= b["cw"] + 0.05 and b["y"] + b["h"] <= b["ch"] + 0.05, b


@pytest.mark.browser
def test_svg_of_several_pages_is_a_zip_of_pages(client: httpx.Client, browser: Browser,
                                                batch8: tuple[str, dict[str, str], str], tmp_path: Path) -> None:
    batch, made, _ = batch8
    r = client.get(LABELS, params={"batch": batch, "format": "svg", "columns": 2, "rows": 2})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == f'attachment; filename="labels-{batch}.svg.zip"'
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert z.namelist() == ["page-001.svg", "page-002.svg"]
        decoded = []
        for name in z.namelist():
            png, _ = render_svg(browser, z.read(name))
            found = decode_all(png, tmp_path, name + ".png")
            assert len(found) == 4
            decoded += found
    assert sorted(decoded) == sorted(made)


@pytest.mark.browser
def test_zip_of_single_files_with_manifest(client: httpx.Client, browser: Browser,
                                           batch8: tuple[str, dict[str, str], str], tmp_path: Path) -> None:
    batch, made, _ = batch8
    for files in ("svg", "png"):
        r = client.get(LABELS, params={"batch": batch, "format": "zip", "files": files, "scale": 4})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/zip"
        assert r.headers["content-disposition"] == f'attachment; filename="labels-{batch}.zip"'
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            names = z.namelist()
            assert names[-1] == "manifest.csv" and len(names) == 9
            rows = list(csv.DictReader(io.StringIO(z.read("manifest.csv").decode("utf-8"))))
            assert [row["file"] for row in rows] == names[:-1]
            assert {row["uniqueProductIdentifier"]: row["dppId"] for row in rows} == made
            for row in rows:
                name = row["file"]
                assert re.fullmatch(r"\d{4}_[A-Za-z0-9._-]+\." + files, name) and ".." not in name
                data = z.read(name)
                if files == "png":
                    assert data.startswith(b"\x89PNG")
                    image = data
                else:
                    label = ET.fromstring(data)
                    assert label.findtext(f"{SVG_NS}title") == row["uniqueProductIdentifier"]
                    image, _ = render_svg(browser, data)
                assert decode_all(image, tmp_path, f"f.{files}.png") == [row["uniqueProductIdentifier"]]


def test_a_list_of_dpp_ids_and_the_operator_itself(client: httpx.Client, server: ServerThread,
                                                   session_factory: Any, batch8: tuple[str, dict[str, str], str],
                                                   passport: dict[str, Any], tmp_path: Path) -> None:
    _, made, _ = batch8
    chosen = sorted(made)[1:4]
    own = token_for(server, session_factory, operator_id=passport["economicOperatorId"])  # the operator's own client
    params = httpx.QueryParams(tuple([("dppId", made[k]) for k in reversed(chosen)] + [("dppId", made[chosen[0]])]))
    r = httpx.get(server.base_url + LABELS, headers=own, params=params)  # duplicates count once
    assert r.status_code == 200, r.text
    assert r.headers["x-label-count"] == "3"
    [(png, _)] = pdf_pages(r.content)
    assert sorted(decode_all(png, tmp_path)) == chosen


# ------------------------------------------------------------------------------ who may, and the access log


def test_anonymous_is_401(public: httpx.Client, batch8: tuple[str, dict[str, str], str]) -> None:
    batch, _, _ = batch8
    assert_error(public.get(LABELS, params={"batch": batch}), 401, "ClientNotAuthorized")
    assert_error(public.get(LABELS, params={"batch": batch, "columns": 0}), 401, "ClientNotAuthorized")


def test_another_operator_is_refused(server: ServerThread, session_factory: Any, engine: Any,
                                     batch8: tuple[str, dict[str, str], str], passport: dict[str, Any]) -> None:
    batch, made, _ = batch8
    other = token_for(server, session_factory, operator_id=f"urn:dbp:test:labels-other-{uuid.uuid4().hex[:6]}")
    with httpx.Client(base_url=server.base_url, headers=other, timeout=30) as c:
        # filters select among the caller's own passports only: another operator's batch is not found
        body = assert_error(c.get(LABELS, params={"batch": batch}), 404, "ClientErrorResourceNotFound")
        assert "operators you act for" in body["message"][0]["text"]
        # naming another operator's passports or the operator itself is refused, and logged
        some = sorted(made.values())[:2]
        body = assert_error(c.get(LABELS, params=[("dppId", d) for d in some]), 403, "ClientForbidden")
        assert "not of an operator you act for" in body["message"][0]["text"]
        assert_error(c.get(LABELS, params={"operator": passport["economicOperatorId"]}), 403, "ClientForbidden")
    settle_access_log(engine)
    with engine.connect() as conn:
        denied = conn.execute(text("SELECT action, outcome, reason FROM access_log WHERE outcome = 'denied' "
                                   "AND action = 'export'")).all()
    assert len(denied) == 2 and all("act for" in (d.reason or "") for d in denied)


def test_the_read_is_one_access_log_record(client: httpx.Client, engine: Any,
                                           batch8: tuple[str, dict[str, str], str]) -> None:
    batch, _, _ = batch8
    r = client.get(LABELS, params={"batch": batch, "format": "zip"})
    assert r.status_code == 200, r.text
    settle_access_log(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT dpp_id, action, outcome, detail, reason, passport_operator_id, role "
                                 "FROM access_log WHERE action = 'export'")).all()
    assert len(rows) == 1
    row = rows[0]
    assert row.outcome == "granted" and row.dpp_id is None and row.role == "serviceProvider"
    assert json.loads(row.detail) == ["uniqueProductIdentifier", "count=8"]
    assert batch in row.reason and "zip" in row.reason and row.passport_operator_id


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("params", [
    {"columns": 0}, {"columns": 13}, {"rows": 0}, {"rows": 41}, {"margin": -1}, {"margin": 51}, {"gap": 21},
    {"codeSize": 4}, {"codeSize": 251}, {"codeSize": 60}, {"fontSize": 3}, {"fontSize": 17}, {"ecc": "X"},
    {"border": 1}, {"border": 17}, {"page": "a3"}, {"format": "gif"}, {"files": "jpg"}, {"scale": 0},
    {"scale": 41}, {"columns": "three"}, {"margin": "nan"}, {"margin": "inf"}, {"gap": "1e999"},
    {"columns": 12, "rows": 40},  # labels of 14.7 × 6.1 mm: too small
    {"columns": 12, "rows": 24, "ecc": "H"},  # fits, but the modules would be under 0.25 mm
])
def test_malformed_and_out_of_range_options_are_400(client: httpx.Client, batch8: tuple[str, dict[str, str], str],
                                                    params: dict[str, Any]) -> None:
    batch, _, _ = batch8
    body = assert_error(client.get(LABELS, params={"batch": batch, **params}), 400, "ClientErrorBadRequest")
    names = set(params) | ({"columns", "rows", "codeSize"} if len(params) > 1 else set())
    assert any(name in json.dumps(body) for name in names), body


def test_the_selection_must_be_one_of_the_kinds(client: httpx.Client, batch8: tuple[str, dict[str, str], str]) -> None:
    batch, made, _ = batch8
    assert "expected batch, model, operator or dppId" in str(assert_error(client.get(LABELS), 400,
                                                                          "ClientErrorBadRequest"))
    mixed = client.get(LABELS, params=[("batch", batch), ("dppId", next(iter(made.values())))])
    assert "dppId alone" in str(assert_error(mixed, 400, "ClientErrorBadRequest"))


def test_unknown_batch_and_passports_are_404(client: httpx.Client, batch8: tuple[str, dict[str, str], str]) -> None:
    body = assert_error(client.get(LABELS, params={"batch": "NO-SUCH-BATCH"}), 404, "ClientErrorResourceNotFound")
    assert "NO-SUCH-BATCH" in body["message"][0]["text"]
    assert_error(client.get(LABELS, params={"model": "no such model"}), 404, "ClientErrorResourceNotFound")
    body = assert_error(client.get(LABELS, params={"dppId": "urn:uuid:00000000-0000-4000-8000-000000000000"}), 404,
                        "ClientErrorResourceNotFound")
    assert "urn:uuid:00000000-0000-4000-8000-000000000000" in body["message"][0]["text"]
    assert_error(client.get(LABELS, params={"batch": "NO-SUCH-BATCH", "rows": 0}), 400,  # options first
                 "ClientErrorBadRequest")


def test_oversize_selections_are_refused(client: httpx.Client, session_factory: Any,
                                         batch8: tuple[str, dict[str, str], str]) -> None:
    batch, made, _ = batch8
    r = client.get(LABELS, params=[("dppId", "x")] * 1001)  # 8 KB: the URL limit bounds real lists far lower
    body = assert_error(r, 400, "ClientErrorBadRequest")
    assert "at most 1000" in body["message"][0]["text"] and "1001" in body["message"][0]["text"]
    with session_factory() as s:  # a filter matching more than the limit: refused, naming it
        with pytest.raises(BadRequest, match="more than 5 passports match"):
            service.label_rows(s, batch=batch, limit=5)
        assert len(service.label_rows(s, batch=batch, limit=8)) == 8
        with pytest.raises(BadRequest, match="at most 3 passports, got 4"):
            service.label_rows(s, dpp_ids=list(made.values())[:4], limit=3)
    with pytest.raises(BadRequest, match=f"at most {sheets.MAX_LABELS} labels"):
        sheets.pdf([sheets.Label("https://x.example/1", ("x",))] * (sheets.MAX_LABELS + 1), sheets.options())


@pytest.mark.parametrize("params", [
    {"batch": "B\x00ATCH"}, {"model": "M\x00"}, {"batch": "x" * 300}, {"batch": "x" * 5000},
    {"operator": "\x00"}, {"dppId": "urn:uuid:\x00"}, {"dppId": "x" * 300}, {"batch": ""}, {"batch": "a\nb"},
])
def test_hostile_selection_values_are_400_not_500(client: httpx.Client, session_factory: Any,
                                                  params: dict[str, Any]) -> None:
    body = assert_error(client.get(LABELS, params=params), 400, "ClientErrorBadRequest")
    name, value = next(iter(params.items()))
    assert name in json.dumps(body) or "NUL" in json.dumps(body)  # the server refuses NUL in any URL first
    kwargs = {"dppId": "dpp_ids", "operator": "operator_id"}
    with session_factory() as s, pytest.raises(BadRequest, match=name):  # and the service itself (dbp qr-labels)
        call: dict[str, Any] = {kwargs.get(name, name): [value] if name == "dppId" else value}
        service.label_rows(s, **call)


@pytest.mark.parametrize("value", ["../../etc/passwd", "..%2F..%2Fetc", "<script>alert(1)</script>", "' OR 1=1 --",
                                   "%", "_", "Zürich-€"])
def test_path_traversal_and_injection_looking_values_match_nothing(client: httpx.Client,
                                                                   batch8: tuple[str, dict[str, str], str],
                                                                   value: str) -> None:
    for name in ("batch", "dppId", "model"):
        body = assert_error(client.get(LABELS, params={name: value}), 404, "ClientErrorResourceNotFound")
        assert value in body["message"][0]["text"]  # named as given, inside JSON (never interpreted)


@pytest.mark.browser
def test_hostile_captions_are_escaped_and_names_stay_safe(client: httpx.Client, browser: Browser,
                                                          passport: dict[str, Any], tmp_path: Path) -> None:
    model = "<b>Cell&\"Pack'</b> =cmd|' /C calc'!A0"
    batch, made = make_batch(client, passport, 2, model=model, batch="../..\\evil batch")
    r = client.get(LABELS, params={"batch": batch, "format": "svg"})
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == 'attachment; filename="labels-evil_batch.svg"'
    root = ET.fromstring(r.content)  # well-formed: the markup is text
    for label in root.findall(f"{SVG_NS}svg"):
        caption = "".join(t.text or "" for t in label.iter(f"{SVG_NS}text")).replace(" ", "")
        assert f"Model {model}".replace(" ", "") in caption
    assert not list(root.iter(f"{SVG_NS}b"))
    png, _ = render_svg(browser, r.content)
    assert sorted(decode_all(png, tmp_path)) == sorted(made)
    z = client.get(LABELS, params={"batch": batch, "format": "zip"})
    with zipfile.ZipFile(io.BytesIO(z.content)) as zf:
        for name in zf.namelist():
            assert "/" not in name and "\\" not in name and not name.startswith(".")
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
    assert all(row["caption"].split(" | ")[1] == f"Model {model}" for row in rows)


# ------------------------------------------------------------------------------ command line


def test_cli_writes_pdf_svg_and_zip(settings: Settings, batch8: tuple[str, dict[str, str], str],
                                    tmp_path: Path) -> None:
    batch, made, _ = batch8
    url = ["--database-url", settings.database_url]
    out = tmp_path / "sheet.pdf"
    result = CliRunner().invoke(cli, ["qr-labels", "--batch", batch, "-o", str(out), "--columns", "2", "--rows", "5",
                                      *url])
    assert result.exit_code == 0, result.output
    assert "8 labels on 1 page" in result.output
    [(png, page_text)] = pdf_pages(out.read_bytes())
    assert sorted(decode_all(png, tmp_path)) == sorted(made)
    assert all(link in joined(page_text) for link in made)
    svg = tmp_path / "sheet.svg"
    result = CliRunner().invoke(cli, ["qr-labels", "--batch", batch, "-o", str(svg), "--rows", "2", *url])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("sheet-*.svg")) == ["sheet-001.svg", "sheet-002.svg"]
    dpp_ids = list(made.values())
    zipped = tmp_path / "labels.zip"
    result = CliRunner().invoke(cli, ["qr-labels", "--dpp-id", dpp_ids[0], "--dpp-id", dpp_ids[1], "--files", "png",
                                      "-o", str(zipped), *url])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(zipped) as z:
        pngs = [n for n in z.namelist() if n.endswith(".png")]
        assert sorted(decode_all(z.read(n), tmp_path, n)[0] for n in pngs) == sorted(
            k for k, v in made.items() if v in dpp_ids[:2])


def test_cli_exit_codes(settings: Settings, batch8: tuple[str, dict[str, str], str], tmp_path: Path) -> None:
    batch, _, _ = batch8
    url = ["--database-url", settings.database_url]
    out = ["-o", str(tmp_path / "x.pdf")]
    missing = CliRunner().invoke(cli, ["qr-labels", "--batch", "NO-SUCH", *out, *url])
    assert missing.exit_code == 1 and "no passports" in missing.output
    for bad in (["--columns", "0"], ["--rows", "41"], ["--border", "1"], ["--ecc", "X"], ["--format", "gif"],
                ["--code-size", "60"], ["--page", "a3"], ["--dpp-id", "x"]):
        result = CliRunner().invoke(cli, ["qr-labels", "--batch", batch, *bad, *out, *url])
        assert result.exit_code == 2, (bad, result.output)
    assert CliRunner().invoke(cli, ["qr-labels", *out, *url]).exit_code == 2  # nothing selected
    assert CliRunner().invoke(cli, ["qr-labels", "--batch", batch, *url]).exit_code == 2  # no -o
    helped = CliRunner().invoke(cli, ["qr-labels", "--help"])
    assert helped.exit_code == 0 and "uniqueProductIdentifier" in helped.output
    unwritable = CliRunner().invoke(cli, ["qr-labels", "--batch", batch, "-o", str(tmp_path / "no" / "x.pdf"), *url])
    assert unwritable.exit_code == 1
    unknown = CliRunner().invoke(cli, ["qr-labels", "--dpp-id", "urn:uuid:0", *out, *url])
    assert unknown.exit_code == 1 and "no passport urn:uuid:0" in unknown.output


# ------------------------------------------------------------------------------ pure parts


def test_options_defaults_and_refusals_name_the_parameter() -> None:
    opts = sheets.options()
    assert (opts.page, opts.columns, opts.rows, opts.border, opts.ecc) == (sheets.Page.a4, 3, 8, 4, qr.Ecc.M)
    assert sheets.Page.letter.size_mm == (215.9, 279.4) and sheets.Page.a4.size_mm == (210.0, 297.0)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"columns": 0}, "columns"), ({"rows": 99}, "rows"), ({"margin": float("nan")}, "margin"),
        ({"gap": -0.1}, "gap"), ({"code_size": 1}, "codeSize"), ({"font_size": 99}, "fontSize"),
        ({"ecc": "Z"}, "ecc"), ({"border": 0}, "border"), ({"page": "A5"}, "page"),
                         ({"code_size": 200}, "codeSize")]
    for kwargs, name in cases:
        with pytest.raises(BadRequest) as caught:
            sheets.options(**kwargs)
        assert caught.value.details[0].path == name and caught.value.message.startswith(f"{name}: ")


def test_captions_never_overflow() -> None:
    rng = random.Random(5)
    alphabet = "abcdefghijklmnopqrstuvwxyzWMW0123456789/-_.:?&= €ü\x00\t"
    for _ in range(400):
        caption = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400))) for _ in range(rng.randint(1, 4))]
        width, height = rng.uniform(12, 80), rng.uniform(2, 60)
        size, lines = sheets.fit_caption(caption, width, height, rng.choice([4.0, 7.0, 16.0]))
        assert sheets.FONT_MIN_PT <= size <= 16
        assert len(lines) * size * sheets.PT * sheets.LEADING <= height + 1e-6
        for line in lines:
            assert sheets._width(line, size) <= width + 1e-6 and "\x00" not in line
    size, lines = sheets.fit_caption(["https://id.example.com/01/09506000134352/21/ABC", "Model X"], 40, 40, 7)
    assert size == 7 and "".join(lines[:-1]) == "https://id.example.com/01/09506000134352/21/ABC"
    size, lines = sheets.fit_caption(["y" * 2000], 20, 5, 7)
    assert size == sheets.FONT_MIN_PT and lines[-1].endswith("…")


def test_dark_rects_are_exactly_the_dark_modules() -> None:
    symbol = qr.symbol("https://id.example.com/01/09506000134352/21/Zürich", qr.Ecc.Q)
    rects = sheets.dark_rects(symbol.matrix, 4)
    n = len(symbol.matrix)
    painted = [[0] * (n + 8) for _ in range(n + 8)]
    for x, y, w, h in rects:
        for yy in range(y, y + h):
            for xx in range(x, x + w):
                assert painted[yy][xx] == 0  # no overlap
                painted[yy][xx] = 1
    expected = [[0] * (n + 8) for _ in range(4)] + [[0] * 4 + list(row) + [0] * 4 for row in symbol.matrix] \
        + [[0] * (n + 8) for _ in range(4)]
    assert painted == expected


def test_file_stems_are_safe_unique_and_bounded() -> None:
    assert sheets.file_stem(1, "https://id.example.com/01/09506000134352/21/A1") == \
        "0001_id.example.com_01_09506000134352_21_A1"
    for link in ["../../etc/passwd", "..", "\x00", "https://x/" + "é" * 500, "C:\\Windows\\x", ""]:
        stem = sheets.file_stem(7, link)
        assert re.fullmatch(r"0007_[A-Za-z0-9._-]+", stem) and len(stem) <= sheets.NAME_MAX and ".." not in stem


def test_the_same_batch_gives_the_same_bytes() -> None:
    labels = [sheets.Label(f"https://id.example.com/01/09506000134352/21/S{i}", (f"S{i}",), f"urn:uuid:{i}")
              for i in range(5)]
    opts = sheets.options(columns=2, rows=2)
    assert sheets.pdf(labels, opts) == sheets.pdf(labels, opts)
    assert sheets.zip_files(labels, opts) == sheets.zip_files(labels, opts)
    assert len(sheets.svg_pages(labels, opts)) == 2


def test_service_rejects_an_empty_selection_and_unknown_ids(session_factory: Any) -> None:
    with session_factory() as s:
        with pytest.raises(BadRequest, match="expected batch, model, operator or dppId"):
            service.label_rows(s)
        with pytest.raises(NotFound, match="no passport urn:uuid:a, urn:uuid:b"):
            service.label_rows(s, dpp_ids=["urn:uuid:a", "urn:uuid:b"])
