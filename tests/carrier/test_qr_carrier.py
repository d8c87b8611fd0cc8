"""The QR data carrier: codes generated over real HTTP and by ``dbp qr`` are decoded by a real reader (Debian's
``zbarimg``, installed by ``scripts/ensure-zbar``) and must carry the passport's product identifier exactly."""

from __future__ import annotations

import copy
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from conftest import assert_error
from dbp.carrier import qr
from dbp.cli import app as cli
from dbp.config import Settings
from dbp.errors import BadRequest

SVG_NS = "{http://www.w3.org/2000/svg}"


def decode(data: bytes, tmp_path: Path, name: str = "code.png") -> str:
    """What a real QR reader reads from the image (fails, never skips, when the reader is missing)."""
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        pytest.fail("zbarimg is missing: run scripts/ensure-zbar (Debian zbar-tools)", pytrace=False)
    path = tmp_path / name
    path.write_bytes(data)
    done = subprocess.run([zbarimg, "--raw", "-q", str(path)], capture_output=True, timeout=60)
    assert done.returncode == 0, f"zbarimg found no code (rc {done.returncode}): {done.stderr!r}"
    text = done.stdout.decode("utf-8")
    assert text.endswith("\n")
    return text[:-1]


def create(client: httpx.Client, doc: dict[str, Any]) -> str:
    r = client.post("/api/v1/dpps", json=doc)
    assert r.status_code == 201, r.text
    dpp_id: str = r.json()["dppId"]
    return dpp_id


@pytest.fixture()
def several(client: httpx.Client, fleet: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(dppId, uniqueProductIdentifier) of one passport per battery category."""
    seen: dict[str, dict[str, Any]] = {}
    for d in fleet:
        seen.setdefault(d["generalProductInformation"]["batteryCategory"], d)
    assert len(seen) >= 4
    return [(create(client, copy.deepcopy(d)), d["uniqueProductIdentifier"]) for d in seen.values()]


def test_png_over_http_decodes_to_the_product_identifier(public: httpx.Client, several: list[tuple[str, str]],
                                                         tmp_path: Path) -> None:
    choices = [{}, {"ecc": "L", "scale": 2}, {"ecc": "q", "scale": 6, "border": 2}, {"ecc": "H", "scale": 3}]
    for (dpp_id, product_id), params in zip(several, choices * 2, strict=False):
        r = public.get(f"/api/v1/dpps/{dpp_id}/qr", params={"format": "png", **params})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        assert r.content.startswith(b"\x89PNG\r\n\x1a\n")
        assert "public" in r.headers["cache-control"] and "max-age=" in r.headers["cache-control"]
        decoded = decode(r.content, tmp_path)
        assert decoded == product_id
        assert decoded.startswith("https://") and dpp_id not in decoded  # the link, never the passport id


def test_svg_is_well_formed_with_the_viewbox_of_scale_and_border(public: httpx.Client,
                                                                 several: list[tuple[str, str]]) -> None:
    dpp_id, product_id = several[0]
    r = public.get(f"/api/v1/dpps/{dpp_id}/qr", params={"scale": 1, "border": 0})  # SVG is the default
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.content)
    modules = int(root.get("width", "0"))
    assert root.tag == f"{SVG_NS}svg" and 21 <= modules <= 177 and (modules - 17) % 4 == 0  # a QR version's size
    assert root.findtext(f"{SVG_NS}title") == product_id
    for scale, border in [(1, 4), (5, 3), (40, 16), (7, 0)]:
        r = public.get(f"/api/v1/dpps/{dpp_id}/qr", params={"format": "svg", "scale": scale, "border": border})
        assert r.status_code == 200, r.text
        root = ET.fromstring(r.content)
        side = (modules + 2 * border) * scale
        assert root.get("viewBox") == f"0 0 {side} {side}"
        assert root.get("width") == root.get("height") == str(side)


def test_the_same_code_is_cached_and_revalidated(public: httpx.Client, several: list[tuple[str, str]]) -> None:
    dpp_id, _ = several[0]
    first = public.get(f"/api/v1/dpps/{dpp_id}/qr", params={"format": "png"})
    assert first.status_code == 200 and first.headers["etag"]
    again = public.get(f"/api/v1/dpps/{dpp_id}/qr", params={"format": "png"},
                       headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and not again.content
    svg = public.get(f"/api/v1/dpps/{dpp_id}/qr")
    assert svg.headers["etag"] != first.headers["etag"]


@pytest.mark.parametrize("params", [
    {"scale": 0}, {"scale": 41}, {"scale": -3}, {"border": 17}, {"border": -1}, {"ecc": "X"}, {"ecc": "MM"},
    {"format": "gif"}, {"format": "jpeg"}, {"scale": "big"}, {"border": "1.5"},
])
def test_bad_parameters_are_400_with_the_error_object(public: httpx.Client, several: list[tuple[str, str]],
                                                      params: dict[str, Any]) -> None:
    dpp_id, _ = several[0]
    body = assert_error(public.get(f"/api/v1/dpps/{dpp_id}/qr", params=params), 400, "ClientErrorBadRequest")
    name = next(iter(params))
    assert name in str(body)


def test_unknown_passport_is_404(public: httpx.Client, several: list[tuple[str, str]]) -> None:
    assert_error(public.get("/api/v1/dpps/urn:uuid:00000000-0000-4000-8000-000000000000/qr"), 404,
                 "ClientErrorResourceNotFound")
    assert_error(public.get("/api/v1/dpps/urn:uuid:00000000-0000-4000-8000-000000000000/qr",
                            params={"scale": 0}), 400, "ClientErrorBadRequest")  # parameters first


def test_a_urn_identifier_is_carried_as_the_passport_states_it(client: httpx.Client, public: httpx.Client,
                                                               passport: dict[str, Any], tmp_path: Path) -> None:
    passport["uniqueProductIdentifier"] = "urn:epc:id:sgtin:9506000.013435.QR-URN-1"
    dpp_id = create(client, passport)
    r = public.get(f"/api/v1/dpps/{dpp_id}/qr", params={"format": "png"})
    assert r.status_code == 200, r.text
    assert decode(r.content, tmp_path) == "urn:epc:id:sgtin:9506000.013435.QR-URN-1"


def test_an_identifier_beyond_the_capacity_of_the_level_is_a_clear_400(client: httpx.Client, public: httpx.Client,
                                                                       passport: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    long_id = "urn:example:battery:" + "A" * 1900  # 1920 bytes: > H (1273), < L (2953); links are capped lower
    passport["uniqueProductIdentifier"] = long_id
    dpp_id = create(client, passport)
    body = assert_error(public.get(f"/api/v1/dpps/{dpp_id}/qr", params={"ecc": "H"}), 400, "ClientErrorBadRequest")
    text = body["message"][0]["text"]
    assert "capacity" in text and "level H" in text and "L" in text
    r = public.get(f"/api/v1/dpps/{dpp_id}/qr", params={"ecc": "L", "format": "png", "scale": 2})
    assert r.status_code == 200, r.text
    assert decode(r.content, tmp_path) == long_id


def test_cli_writes_a_decodable_file(settings: Settings, several: list[tuple[str, str]], tmp_path: Path) -> None:
    dpp_id, product_id = several[1]
    out = tmp_path / "label.png"
    result = CliRunner().invoke(cli, ["qr", dpp_id, "-o", str(out), "--ecc", "Q", "--scale", "5",
                                      "--database-url", settings.database_url])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG")
    assert decode(out.read_bytes(), tmp_path, "read.png") == product_id
    svg = tmp_path / "label.svg"
    result = CliRunner().invoke(cli, ["qr", dpp_id, "--format", "svg", "--scale", "2", "--border", "1",
                                      "-o", str(svg), "--database-url", settings.database_url])
    assert result.exit_code == 0, result.output
    root = ET.fromstring(svg.read_bytes())
    assert root.findtext(f"{SVG_NS}title") == product_id


def test_cli_exit_codes(settings: Settings, several: list[tuple[str, str]], tmp_path: Path) -> None:
    dpp_id, _ = several[0]
    url = ["--database-url", settings.database_url]
    missing = CliRunner().invoke(cli, ["qr", "urn:uuid:00000000-0000-4000-8000-000000000000", *url])
    assert missing.exit_code == 1 and "no passport" in missing.output
    for bad in (["--scale", "0"], ["--scale", "41"], ["--border", "17"], ["--ecc", "X"], ["--format", "gif"]):
        result = CliRunner().invoke(cli, ["qr", dpp_id, *bad, *url])
        assert result.exit_code == 2, (bad, result.output)
    assert CliRunner().invoke(cli, ["qr"]).exit_code == 2
    helped = CliRunner().invoke(cli, ["qr", "--help"])
    assert helped.exit_code == 0 and "uniqueProductIdentifier" in helped.output
    unwritable = CliRunner().invoke(cli, ["qr", dpp_id, "-o", str(tmp_path / "no" / "such" / "x.svg"), *url])
    assert unwritable.exit_code == 1


def test_options_refuse_out_of_range_values() -> None:
    assert qr.options() == qr.QrOptions(format=qr.Format.svg, scale=4, ecc=qr.Ecc.M, border=4)
    assert qr.options(format="PNG", ecc="h", scale=40, border=0) == qr.QrOptions(qr.Format.png, 40, qr.Ecc.H, 0)
    for kwargs, name in [({"scale": 0}, "scale"), ({"scale": 41}, "scale"), ({"border": 17}, "border"),
                         ({"border": -1}, "border"), ({"ecc": "X"}, "ecc"), ({"format": "gif"}, "format")]:
        with pytest.raises(BadRequest) as caught:
            qr.options(**kwargs)
        assert caught.value.details[0].path == name and name in caught.value.message


def test_encode_pure(tmp_path: Path) -> None:
    assert qr.is_web_link("https://id.example.com/01/09506000134352/21/1")
    assert not qr.is_web_link("urn:epc:id:sgtin:1.2.3") and not qr.is_web_link("https://")
    text = "https://id.example.com/01/09506000134352/21/Zürich-€"  # non-ASCII: UTF-8 with an ECI header
    image = qr.encode(text, qr.options(format="png", scale=3))
    assert image.pixels == (image.modules + 8) * 3 and image.media_type == "image/png"
    assert decode(image.data, tmp_path) == text
    with pytest.raises(BadRequest, match="fits at no level"):
        qr.encode("x" * 3000, qr.options(ecc="L"))
    with pytest.raises(BadRequest, match="no product identifier"):
        qr.encode("", qr.options())
