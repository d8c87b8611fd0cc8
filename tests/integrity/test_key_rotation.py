"""Rotation of the repository key (``dbp keys rotate``): new versions are signed with the new key at once, the
retired key stays published and keeps verifying what it signed, checkpoints are co-signed by both for the
overlap (witnesses that pinned the old key follow), and no version is logged with a key retired under it."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from dbp.access.secrets import DEVELOPMENT_SECRET
from dbp.cli import app as cli
from dbp.errors import Conflict
from dbp.integrity import log, merkle, signing
from dbp.integrity.checkpoint import Checkpoint, Ed25519Signer, parse_verifier_key, sign_checkpoint, verify_checkpoint
from dbp.integrity.models import LogKey
from dbp.integrity.verify import PASS, Trusted, trusted_keys, trusted_periods, verify_bundle


def _rotate(monkeypatch: pytest.MonkeyPatch, settings: Any, which: str = "repository") -> dict[str, str]:
    monkeypatch.setenv("DBP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DBP_ENVIRONMENT", "test")
    result = CliRunner().invoke(cli, ["keys", "rotate", "--which", which])
    assert result.exit_code == 0, result.output
    out: dict[str, str] = json.loads(result.stdout)
    return out


def _wait(condition: Any, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
    return value


def _bundle(caller: httpx.Client, dpp_id: str, **params: Any) -> dict[str, Any]:
    def fetch() -> dict[str, Any] | None:
        r = caller.get(f"/api/v1/dpps/{dpp_id}/evidence", params=params)
        return r.json() if r.status_code == 200 else None
    bundle: dict[str, Any] = _wait(fetch)
    return bundle


def test_rotation_signs_new_versions_with_the_new_key_and_keeps_the_old_one_verifying(
        client: httpx.Client, public: httpx.Client, passport: dict[str, Any], settings: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    r = client.post("/api/v1/dpps", json=passport)
    assert r.status_code == 201, r.text
    dpp_id = r.json()["dppId"]
    old_kid = signing.kid_of(r.headers["x-dpp-signature"])
    old_vkey = parse_verifier_key(_wait(lambda: public.get("/api/v1/log/checkpoint", headers={
        "Accept": "application/json"}).json().get("verifierKey")))

    new_kid = _rotate(monkeypatch, settings)["repositoryKey"]
    assert new_kid != old_kid
    r = client.patch(f"/api/v1/dpps/{dpp_id}", json={"performanceAndDurability": {"ratedCapacity": 62.5}})
    assert r.status_code == 200, r.text
    assert signing.kid_of(r.headers["x-dpp-signature"]) == new_kid  # followed at once, no restart

    jwks = public.get("/.well-known/jwks.json").json()
    assert {old_kid, new_kid} <= {k["kid"] for k in jwks["keys"]}  # the retired key stays published
    did = public.get("/.well-known/did.json").json()
    assert any(m.endswith(f"#{new_kid}") for m in did["assertionMethod"])
    assert not any(m.endswith(f"#{old_kid}") for m in did["assertionMethod"])

    keys = trusted_keys(jwks)
    for version, kid in ((1, old_kid), (2, new_kid)):
        bundle = _bundle(client, dpp_id, version=version)
        report = verify_bundle(bundle, trusted=Trusted(keys=keys))
        assert report.valid, [s.as_json() for s in report.steps]
        assert bundle["leaf"]["kid"] == kid and f"by {kid}" in report.steps[3].detail
        periods = {k["jwk"]["kid"]: k for k in bundle["keys"]}
        assert periods[old_kid]["retiredAt"] is not None and periods[new_kid]["retiredAt"] is None

    # checkpoints after the rotation carry both signatures: a witness that pinned the old key still verifies
    def cosigned() -> dict[str, Any] | None:
        data = public.get("/api/v1/log/checkpoint", headers={"Accept": "application/json"}).json()
        return data if data["note"].count("\u2014 ") == 2 else None
    data = _wait(cosigned)
    new_vkey = parse_verifier_key(data["verifierKey"])
    assert new_vkey != old_vkey
    for pinned in (old_vkey, new_vkey):
        opened = verify_checkpoint(data["note"].encode(), origin=data["origin"], verifiers=[pinned])
        assert opened.verified_by == (pinned,)
    assert verify_bundle(_bundle(public, dpp_id), trusted=Trusted(keys=keys)).steps[5].verdict == PASS


def test_a_version_signed_before_a_rotation_is_not_logged_after_it(session_factory: Any) -> None:
    with session_factory.begin() as s:
        signer = signing.VersionSigner(secret_key=DEVELOPMENT_SECRET)  # the test server's: keys outlive tests
        log.load_key(s, secret_key=signer.secret_key)
    with session_factory.begin() as s:
        kid = signer.key(s).kid
    with session_factory.begin() as s:
        log.rotate_key(s, secret_key=signer.secret_key)
    leaf = log.Leaf("urn:uuid:rotated", 1, "ab" * 32, "2027-02-18T10:00:00.000000Z", kid=kid)
    with pytest.raises(Conflict, match="rotated"), session_factory.begin() as s:
        log.append(s, leaves=[leaf])
    with session_factory() as s:
        assert s.scalar(select(LogKey.retired_at).where(LogKey.kid == kid)) is not None
        assert log.active_kid(s) != kid
    with session_factory.begin() as s:
        assert signer.key(s).kid == log.active_kid(s)  # the signer follows the rotation


def test_keys_rotate_refuses_an_unknown_choice(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    monkeypatch.setenv("DBP_DATABASE_URL", settings.database_url)
    result = CliRunner().invoke(cli, ["keys", "rotate", "--which", "everything"])
    assert result.exit_code == 2
    assert "expected tokens, repository or all" in result.output


def test_a_retired_key_cannot_vouch_for_a_version_after_its_retirement(
        client: httpx.Client, public: httpx.Client, passport: dict[str, Any], settings: Any,
        monkeypatch: pytest.MonkeyPatch, session_factory: Any) -> None:
    """Whoever holds a retired (say, leaked) key can build a whole bundle — leaf, tree, checkpoint — dated after
    its retirement and claim in it that the key never retired; the repository's published periods refuse it."""
    r = client.post("/api/v1/dpps", json=passport)
    assert r.status_code == 201, r.text
    genuine = _bundle(client, r.json()["dppId"])
    old_kid = signing.kid_of(genuine["signature"])
    _rotate(monkeypatch, settings)
    with session_factory() as s:
        old_key = log.decrypt_key(s.get(LogKey, old_kid), DEVELOPMENT_SECRET)
    forged = dict(genuine)
    at = "2099-01-01T00:00:00.000000Z"
    leaf = log.Leaf(genuine["dppId"], 7, genuine["leaf"]["sha256"], at, kid=old_kid,
                    public_sha256=genuine["leaf"]["publicSha256"])
    root = merkle.hash_leaf(leaf.encode())
    forged.update(version=7, leaf=leaf.as_json(), leafIndex=0, treeSize=1, inclusionProof=[],
                  checkpoint=sign_checkpoint(Checkpoint(genuine["origin"], 1, root),
                                             [Ed25519Signer(genuine["origin"], old_key)]).decode(),
                  keys=[{**k, "retiredAt": None} for k in genuine["keys"] if k["jwk"]["kid"] == old_kid])
    published = public.get("/api/v1/log/keys").json()
    assert any(k["jwk"]["kid"] == old_kid and k["retiredAt"] for k in published["keys"])
    lax = verify_bundle(forged, trusted=Trusted(keys=trusted_keys(published)))  # keys pinned, periods not
    assert lax.valid  # why periods must come from the repository too
    strict = verify_bundle(forged, trusted=Trusted(keys=trusted_keys(published), periods=trusted_periods(published)))
    assert not strict.valid and strict.first_failure is not None and strict.first_failure.name == "signature"
    assert "expected it to be the signing key at 2099" in strict.first_failure.detail
    server = public.post("/api/v1/verify", json=forged).json()  # our origin: the server uses its own periods
    assert server["valid"] is False and server["failedStep"] == "signature"
