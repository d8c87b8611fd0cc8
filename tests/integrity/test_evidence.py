"""Evidence bundles end to end: exported over HTTP, verified offline (``verify_bundle``, ``dbp verify``) and by the
server (``POST /api/v1/verify``); every tampering — of the bundle in transit, or of rows in the database — fails
with the step that catches it named."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import text
from typer.testing import CliRunner

from conftest import settle_access_log
from dbp.cli import app as cli
from dbp.integrity import evidence, signing
from dbp.integrity.canonical import canonical_bytes
from dbp.integrity.checkpoint import Checkpoint, Ed25519Signer, parse_checkpoint, parse_note, sign_checkpoint
from dbp.integrity.verify import FAIL, NOT_APPLICABLE, PASS, SKIPPED, WARN, Trusted, trusted_keys, verify_bundle


def _create(client: httpx.Client, doc: dict[str, Any]) -> str:
    r = client.post("/api/v1/dpps", json=doc)
    assert r.status_code == 201, r.text
    return str(r.json()["dppId"])


def _bundle(caller: httpx.Client, dpp_id: str, *, timeout: float = 15, **params: Any) -> dict[str, Any]:
    """The evidence bundle once a checkpoint covers the version (one is signed every second)."""
    deadline = time.monotonic() + timeout
    while True:
        r = caller.get(f"/api/v1/dpps/{dpp_id}/evidence", params=params)
        if r.status_code == 200:
            assert r.headers["content-type"].startswith("application/json")
            data: dict[str, Any] = r.json()
            assert r.headers["x-dpp-evidence-view"] == data["view"]
            return data
        assert r.status_code in (404, 503) and "checkpoint" in r.text, r.text
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)


def _verdicts(report: Any) -> dict[str, str]:
    return {s.name: s.verdict for s in report.steps}


def _failed(report: Any) -> set[str]:
    return {s.name for s in report.steps if s.verdict == FAIL}


@pytest.fixture()
def signed(client: httpx.Client, passport: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A passport with two versions and the full bundle of its current version."""
    dpp_id = _create(client, passport)
    r = client.patch(f"/api/v1/dpps/{dpp_id}", json={"performanceAndDurability": {"ratedCapacity": 61.5}})
    assert r.status_code == 200, r.text
    return dpp_id, _bundle(client, dpp_id)


def _jwks(public: httpx.Client) -> dict[str, bytes]:
    return trusted_keys(public.get("/.well-known/jwks.json").json())


# --- a valid bundle ----------------------------------------------------------------------------------------------


def test_full_bundle_verifies_offline_step_by_step(signed: tuple[str, dict[str, Any]], client: httpx.Client,
                                                   public: httpx.Client) -> None:
    dpp_id, bundle = signed
    assert bundle["view"] == "full" and bundle["version"] == 2 and bundle["dppId"] == dpp_id
    current = client.get(f"/api/v1/dpps/{dpp_id}")
    assert bundle["document"].encode() == current.content  # exactly the bytes a read returns
    assert bundle["signature"] == current.headers["x-dpp-signature"]
    assert bundle["leaf"]["sha256"] == hashlib.sha256(current.content).hexdigest()
    assert evidence.bundle_json(evidence.parse_bundle(orjson.dumps(bundle))) == orjson.dumps(
        bundle, option=orjson.OPT_INDENT_2)  # round trip

    alone = verify_bundle(orjson.dumps(bundle))
    # consistent, but only its own keys vouch for it: never "valid" without keys the verifier trusts
    assert alone.consistent and not alone.valid and alone.verdict == "unauthenticated"
    assert [s.number for s in alone.steps] == list(range(1, 9))
    assert _verdicts(alone) == {"bundle": PASS, "canonical": PASS, "contentHash": PASS, "signature": PASS,
                                "inclusion": PASS, "checkpoint": PASS, "keys": WARN, "consistency": SKIPPED}
    pinned = verify_bundle(bundle, trusted=Trusted(keys=_jwks(public)))
    assert pinned.valid and _verdicts(pinned)["keys"] == PASS
    assert "the repository's signing key" in pinned.steps[3].detail


def test_public_callers_get_the_public_view_authenticated_through_the_log(
        signed: tuple[str, dict[str, Any]], public: httpx.Client) -> None:
    dpp_id, full = signed
    bundle = _bundle(public, dpp_id)
    assert bundle["view"] == "public" and bundle["signature"] is None
    shown = public.get(f"/api/v1/dpps/{dpp_id}")
    assert bundle["document"].encode() == shown.content
    assert bundle["leaf"] == full["leaf"] and bundle["leaf"]["publicSha256"] == hashlib.sha256(
        shown.content).hexdigest()
    assert "batteryMaterials" not in bundle["document"] or full["document"] != bundle["document"]
    report = verify_bundle(bundle, trusted=Trusted(keys=_jwks(public)))
    assert report.valid and _verdicts(report)["signature"] == NOT_APPLICABLE


def test_older_versions_and_the_server_verifier(signed: tuple[str, dict[str, Any]], client: httpx.Client,
                                                public: httpx.Client) -> None:
    dpp_id, bundle = signed
    first = _bundle(client, dpp_id, version=1)
    assert first["version"] == 1 and first["leafIndex"] < bundle["leafIndex"]
    assert verify_bundle(first).consistent
    r = public.post("/api/v1/verify", json=bundle)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] and body["failedStep"] is None and body["steps"][6]["verdict"] == PASS  # our own keys
    # with a trusted checkpoint: the server finds the consistency proof in its log
    older = first["checkpoint"]
    r = public.post("/api/v1/verify", json={"bundle": bundle, "trustedCheckpoint": older})
    assert r.json()["valid"] and r.json()["steps"][7]["verdict"] == PASS, r.text


def test_cli_exit_codes_for_a_genuine_bundle(signed: tuple[str, dict[str, Any]], public: httpx.Client,
                                             tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(orjson.dumps(signed[1]))
    keys = tmp_path / "keys.json"
    keys.write_bytes(public.get("/api/v1/log/keys").content)
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(public.get("/.well-known/jwks.json").content)
    assert CliRunner().invoke(cli, ["verify", str(path)]).exit_code == 4  # only its own keys
    with_keys = CliRunner().invoke(cli, ["verify", str(path), "--keys", str(keys), "--json"])
    assert with_keys.exit_code == 0, with_keys.output
    assert "trusted key periods" in json.loads(with_keys.stdout)["steps"][3]["detail"]
    with_jwks = CliRunner().invoke(cli, ["verify", str(path), "--keys", str(jwks), "--json"])
    assert with_jwks.exit_code == 0 and "the bundle's key periods" in json.loads(with_jwks.stdout)["steps"][3]["detail"]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert CliRunner().invoke(cli, ["verify", str(bad)]).exit_code == 1
    assert CliRunner().invoke(cli, ["verify", str(tmp_path / "missing.json")]).exit_code == 1


# --- tampering with the bundle -----------------------------------------------------------------------------------


def _flip_b64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _alter_document(b: dict[str, Any]) -> None:
    doc = json.loads(b["document"])
    doc["performanceAndDurability"]["ratedCapacity"] = 99.0
    b["document"] = canonical_bytes(doc).decode()


def _uncanonical(b: dict[str, Any]) -> None:
    b["document"] = b["document"].replace(",", ", ", 1)


def _signature(b: dict[str, Any]) -> None:
    head, _, sig = b["signature"].split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[5] ^= 0x40
    b["signature"] = f"{head}..{signing.b64url(bytes(raw))}"


def _leaf_time(b: dict[str, Any]) -> None:
    b["leaf"]["at"] = b["leaf"]["at"].replace("20", "19", 1)


def _proof(b: dict[str, Any]) -> None:
    b["inclusionProof"][0] = _flip_b64(b["inclusionProof"][0])


def _leaf_index(b: dict[str, Any]) -> None:
    b["leafIndex"] += 1


def _root(b: dict[str, Any]) -> None:
    lines = b["checkpoint"].split("\n")
    lines[2] = _flip_b64(lines[2])
    b["checkpoint"] = "\n".join(lines)


def _note_signature(b: dict[str, Any]) -> None:
    text_part, _, sig_line = b["checkpoint"].rstrip("\n").rpartition("\n")
    name, _, blob = sig_line.rpartition(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    b["checkpoint"] = f"{text_part}\n{name} {base64.b64encode(bytes(raw)).decode()}\n"


def _other_passport(b: dict[str, Any]) -> None:
    b["dppId"] = "urn:uuid:00000000-0000-4000-8000-000000000000"


def _retired_key(b: dict[str, Any]) -> None:
    b["keys"][-1]["retiredAt"] = "2000-01-01T00:00:00.000000Z"


def _garbage(b: dict[str, Any]) -> None:
    b["format"] = "dbp.evidence/0"


TAMPERING = {  # what is altered → the steps that fail
    "document": (_alter_document, {"contentHash", "signature"}),
    "non-canonical document": (_uncanonical, {"canonical", "contentHash", "signature"}),
    "signature": (_signature, {"signature"}),
    "leaf field": (_leaf_time, {"inclusion", "signature"}),  # the key did not sign in 19xx either
    "inclusion proof": (_proof, {"inclusion"}),
    "leaf index": (_leaf_index, {"inclusion"}),
    "checkpoint root": (_root, {"inclusion", "checkpoint"}),
    "checkpoint signature": (_note_signature, {"checkpoint"}),
    "passport named": (_other_passport, {"canonical", "contentHash"}),
    "key period": (_retired_key, {"signature"}),
    "format": (_garbage, {"bundle"}),
}


@pytest.mark.parametrize("name", sorted(TAMPERING))
def test_each_tampering_fails_at_its_step(name: str, signed: tuple[str, dict[str, Any]], tmp_path: Path,
                                         public: httpx.Client) -> None:
    alter, failing = TAMPERING[name]
    bundle = copy.deepcopy(signed[1])
    alter(bundle)
    report = verify_bundle(bundle)
    assert not report.valid
    assert _failed(report) == failing, [s.as_json() for s in report.steps]
    failed = report.first_failure
    assert failed is not None and any(w in failed.detail for w in ("expected", "does not verify"))
    # the same verdict from the CLI (offline, exit 3, the step named) and from the server
    path = tmp_path / "bundle.json"
    path.write_bytes(orjson.dumps(bundle))
    result = CliRunner().invoke(cli, ["verify", str(path), "--json"])
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["failedStep"] == failed.name
    r = public.post("/api/v1/verify", json=bundle)
    if name == "key period":  # the server goes by its own key periods, not the bundle's claim about them
        assert r.status_code == 200 and r.json()["valid"], r.text
        return
    assert r.status_code == 200 and not r.json()["valid"] and r.json()["failedStep"] == failed.name


def test_a_bundle_re_signed_with_another_key_fails_only_against_the_published_keys(
        signed: tuple[str, dict[str, Any]], public: httpx.Client, tmp_path: Path) -> None:
    """Someone who rewrites a version and re-signs everything with their own key makes a self-consistent bundle;
    the published keys expose it."""
    bundle = copy.deepcopy(signed[1])
    forger = Ed25519PrivateKey.generate()
    kid = bundle["keys"][-1]["jwk"]["kid"]
    public_raw = forger.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    bundle["keys"] = [{"jwk": {**bundle["keys"][-1]["jwk"], "x": signing.b64url(public_raw)},
                       "createdAt": "2000-01-01T00:00:00.000000Z", "retiredAt": None}]
    bundle["signature"] = signing.VersionKey(kid, forger, signing.protected_header(kid)).sign(
        bundle["document"].encode())
    body = parse_checkpoint(parse_note(bundle["checkpoint"].encode()).text)
    bundle["checkpoint"] = sign_checkpoint(Checkpoint(body.origin, body.size, body.root_hash),
                                           [Ed25519Signer(bundle["origin"], forger)]).decode()
    alone = verify_bundle(bundle)
    assert alone.consistent and not alone.valid and _verdicts(alone)["keys"] == WARN  # vouched for by itself
    pinned = verify_bundle(bundle, trusted=Trusted(keys=_jwks(public)))
    assert _failed(pinned) == {"signature", "checkpoint", "keys"}
    assert public.post("/api/v1/verify", json=bundle).json()["failedStep"] == "signature"
    # the same forgery under another origin: the server knows no keys for it, so consistent is not valid
    bundle["origin"] = "forged.example/log"
    bundle["checkpoint"] = sign_checkpoint(Checkpoint(bundle["origin"], body.size, body.root_hash),
                                           [Ed25519Signer(bundle["origin"], forger)]).decode()
    answer = public.post("/api/v1/verify", json=bundle).json()
    assert answer["valid"] is False and answer["verdict"] == "unauthenticated" and answer["failedStep"] is None
    path = tmp_path / "forged.json"
    path.write_bytes(orjson.dumps(bundle))
    result = CliRunner().invoke(cli, ["verify", str(path)])
    assert result.exit_code == 4 and "UNAUTHENTICATED" in result.output, result.output
    keys_file = tmp_path / "keys.json"
    keys_file.write_bytes(public.get("/api/v1/log/keys").content)
    assert CliRunner().invoke(cli, ["verify", str(path), "--keys", str(keys_file)]).exit_code == 3


def test_consistency_with_a_trusted_checkpoint(signed: tuple[str, dict[str, Any]], client: httpx.Client,
                                               passport: dict[str, Any], tmp_path: Path) -> None:
    _, bundle = signed
    trusted = tmp_path / "trusted.note"
    trusted.write_text(bundle["checkpoint"])
    later = copy.deepcopy(passport)
    later["uniqueProductIdentifier"] += "-later"
    later.pop("dppId", None)
    later_id = _create(client, later)
    newer = _bundle(client, later_id)
    assert newer["treeSize"] > bundle["treeSize"]
    # online: the CLI fetches the consistency proof between the trusted size and the bundle's
    result = CliRunner().invoke(cli, ["verify", f"{str(client.base_url).rstrip('/')}/api/v1/dpps/{later_id}",
                                      "--trusted-checkpoint", str(trusted), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"][7]["verdict"] == PASS, result.output
    # offline, without a proof: the step says what is missing
    report = verify_bundle(newer, trusted=Trusted(checkpoint=bundle["checkpoint"]))
    assert _failed(report) == {"consistency"}
    # a trusted checkpoint of another tree (same size, other root) is a fork
    forged = copy.deepcopy(newer)
    _root(forged)
    forked = verify_bundle(bundle, trusted=Trusted(checkpoint=newer["checkpoint"], consistency_proof=[]))
    assert _failed(forked) == {"consistency"}


# --- tampering with the database ---------------------------------------------------------------------------------


def _sql(session_factory: Any, statement: str, **params: Any) -> None:
    with session_factory.begin() as s:
        assert s.execute(text(statement), params).rowcount >= 1  # type: ignore[attr-defined]


def _bump_first_hex(column: str) -> str:
    """SQL that changes the first hex digit of ``column`` (portable: SQLite and PostgreSQL)."""
    return (f"CASE WHEN substr({column}, 1, 1) = 'a' THEN 'b' ELSE 'a' END || substr({column}, 2)")


DB_TAMPERING = {
    "version bytes": ("UPDATE passport_versions SET canonical = replace(canonical, '61.5', '91.5') "
                      "WHERE dpp_id = :d AND version = 2", {"contentHash", "signature"}),
    "version bytes and hash": ("UPDATE passport_versions SET canonical = replace(canonical, '61.5', '91.5'), "
                               "sha256 = 'ff' || substr(sha256, 3) WHERE dpp_id = :d AND version = 2",
                               {"contentHash", "signature"}),
    "signature": ("UPDATE passport_versions SET signature = substr(signature, 1, length(signature) - 4) || 'AAAA' "
                  "WHERE dpp_id = :d AND version = 2", {"signature"}),
    "leaf hash column": (f"UPDATE log_leaves SET sha256 = {_bump_first_hex('sha256')} "
                         "WHERE dpp_id = :d AND version = 2", {"contentHash", "inclusion"}),
    "leaf key column": ("UPDATE log_leaves SET kid = 'lk-forged' WHERE dpp_id = :d AND version = 2",
                        {"signature", "inclusion"}),
    "checkpoint note": ("UPDATE log_checkpoints SET note = replace(note, '\n\n', '\nextra\n\n')",
                        {"inclusion", "checkpoint"}),
}


@pytest.mark.parametrize("name", sorted(DB_TAMPERING))
def test_rows_altered_in_the_database_fail_verification(name: str, signed: tuple[str, dict[str, Any]],
                                                        client: httpx.Client, session_factory: Any,
                                                        server: Any) -> None:
    dpp_id, _ = signed
    statement, failing = DB_TAMPERING[name]
    _sql(session_factory, statement, d=dpp_id)
    # stop the checkpointer from re-signing over the altered rows for this check: read the bundle at once
    r = client.get(f"/api/v1/dpps/{dpp_id}/evidence")
    assert r.status_code == 200, r.text
    report = verify_bundle(r.json())
    assert not report.valid
    assert _failed(report) >= {next(iter(sorted(failing)))} and _failed(report) <= failing | {"canonical"}, \
        [s.as_json() for s in report.steps]
    token = client.headers["authorization"].removeprefix("Bearer ")
    result = CliRunner().invoke(cli, ["verify", f"{server.base_url}/api/v1/dpps/{dpp_id}", "--json",
                                      "--token", token])
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["view"] == "full"


def test_a_node_altered_in_the_database_fails_inclusion(signed: tuple[str, dict[str, Any]], client: httpx.Client,
                                                        session_factory: Any) -> None:
    dpp_id, bundle = signed
    sibling = bundle["leafIndex"] ^ 1
    if sibling >= bundle["treeSize"]:
        pytest.skip("the leaf has no sibling in this tree")  # never with the fixture's two versions
    with session_factory.begin() as s:
        s.execute(text("UPDATE log_nodes SET hash = :h WHERE level = 0 AND idx = :i"), {"h": b"\x00" * 32,
                                                                                       "i": sibling})
    report = verify_bundle(client.get(f"/api/v1/dpps/{dpp_id}/evidence").json())
    assert _failed(report) == {"inclusion"}


# --- HTTP errors ---------------------------------------------------------------------------------------------


def test_evidence_and_verify_refuse_bad_requests(public: httpx.Client, signed: tuple[str, dict[str, Any]]) -> None:
    dpp_id, _ = signed
    assert public.get("/api/v1/dpps/urn:uuid:nobody/evidence").status_code == 404
    assert public.get(f"/api/v1/dpps/{dpp_id}/evidence", params={"version": 9}).status_code == 404
    for bad in ("0", "x", "99999999999", "-1"):
        r = public.get(f"/api/v1/dpps/{dpp_id}/evidence", params={"version": bad})
        assert r.status_code == 400 and r.json()["statusCode"].startswith("Client"), r.text
    assert public.get(f"/api/v1/dpps/{'x' * 300}/evidence").status_code in (400, 404)
    assert public.get(f"/api/v1/dpps/{dpp_id}/evidence", headers={"Accept": "text/html"}).status_code == 406
    assert public.post("/api/v1/verify", content=b"not json",
                       headers={"Content-Type": "application/json"}).status_code == 400
    assert public.post("/api/v1/verify", json=[1, 2]).status_code == 400
    assert public.post("/api/v1/verify", json={"bundle": {}, "evil": 1}).status_code == 400
    assert public.post("/api/v1/verify", json={"bundle": {}, "consistencyProof": ["***"]}).status_code == 400
    assert public.post("/api/v1/verify", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    huge = public.post("/api/v1/verify", content=b"[" + b"1," * 6_000_000 + b"1]",
                       headers={"Content-Type": "application/json"})
    assert huge.status_code == 413
    r = public.post("/api/v1/verify", json={"format": "dbp.evidence/1"})
    assert r.status_code == 200 and r.json()["failedStep"] == "bundle" and not r.json()["valid"]


def test_evidence_reads_are_in_the_access_log(signed: tuple[str, dict[str, Any]], public: httpx.Client,
                                              session_factory: Any) -> None:
    dpp_id, _ = signed
    _bundle(public, dpp_id)
    settle_access_log(session_factory.kw["bind"])
    with session_factory() as s:
        rows = s.execute(text("SELECT principal, detail FROM access_log WHERE dpp_id = :d AND action = 'readEvidence'"),
                         {"d": dpp_id}).all()
    details = sorted((principal == "anonymous", tuple(json.loads(detail))) for principal, detail in rows)
    assert (True, ("public",)) in details, details  # the anonymous read of the public view
    assert any(not anonymous and len(d) == 4 for anonymous, d in details), details  # the operator's full one
