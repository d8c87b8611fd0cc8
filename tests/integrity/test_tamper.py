"""Tamper evidence end to end: rows altered directly in the database (SQLite, and PostgreSQL when
DBP_TEST_DATABASE_URL is set) are named by ``dbp audit-log verify`` (exit 3, first bad entry), flag every read
of the passport concerned over real HTTP once the sentinel has looked (``Sentinel.sweep``, run here directly),
and leave untouched passports unflagged. A clean repository verifies with exit 0."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from conftest import ServerThread, settle_access_log
from dbp.cli import app as cli
from dbp.sentinel import Sentinel

HEADER = "x-dpp-integrity"


@dataclass
class Repo:
    """Three passports written over HTTP, the log checkpointed and the access log digested."""

    ids: list[str]
    sentinel: Sentinel
    app: Any
    engine: Any
    url: str

    def sql(self, statement: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(statement), params)

    def scalar(self, statement: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(statement), params).scalar()

    def leaf_of(self, dpp_id: str) -> int:
        return int(self.scalar("SELECT leaf_index FROM log_leaves WHERE dpp_id = :d", d=dpp_id))

    def verify(self) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["audit-log", "verify", "--database-url", self.url, "--quiet"])
        return result.exit_code, result.stdout


@pytest.fixture()
def repo(server: ServerThread, client: httpx.Client, public: httpx.Client, fleet: list[dict[str, Any]],
         engine: Any, settings: Any) -> Iterator[Repo]:
    app = server.config.app
    sentinel: Sentinel = app.state.sentinel
    sentinel.clear()
    ids = []
    for doc in fleet[:3]:
        r = client.post("/api/v1/dpps", json=doc)
        assert r.status_code == 201, r.text
        ids.append(r.json()["dppId"])
    for dpp_id in ids:  # access-log rows to digest
        assert public.get(f"/api/v1/dpps/{dpp_id}").status_code == 200
    settle_access_log(engine)
    assert sentinel.digest() >= 1
    app.state.checkpointer.tick()
    yield Repo(ids, sentinel, app, engine, settings.database_url)
    sentinel.clear()


def test_clean_repository_verifies(repo: Repo, public: httpx.Client) -> None:
    code, out = repo.verify()
    assert code == 0, out
    check = repo.sentinel.sweep()
    assert check is not None and check.findings.total == 0 and check.log_size == 4 and check.versions == 3
    assert not repo.sentinel.active
    assert HEADER not in public.get(f"/api/v1/dpps/{repo.ids[0]}").headers
    result = CliRunner().invoke(cli, ["audit-log", "verify", "--database-url", repo.url, "--json"])
    assert result.exit_code == 0
    report = orjson.loads(result.stdout)
    assert report["ok"] is True and report["logSize"] == 4 and report["versions"] == 3


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def _canonical(r: Repo) -> None:
    r.sql("UPDATE passport_versions SET canonical = replace(canonical, '\"dppStatus\":\"active\"', "
          "'\"dppStatus\":\"activf\"') WHERE dpp_id = :d", d=r.ids[0])


def _sha_column(r: Repo) -> None:
    r.sql("UPDATE passport_versions SET sha256 = :s WHERE dpp_id = :d", s="0" * 64, d=r.ids[0])


def _signature(r: Repo) -> None:  # another version's (valid-looking) signature
    other = r.scalar("SELECT signature FROM passport_versions WHERE dpp_id = :d", d=r.ids[1])
    r.sql("UPDATE passport_versions SET signature = :s WHERE dpp_id = :d", s=other, d=r.ids[0])


def _public_view(r: Repo) -> None:
    r.sql("UPDATE passport_versions SET public_canonical = replace(public_canonical, '\"dppStatus\":\"active\"', "
          "'\"dppStatus\":\"activf\"') WHERE dpp_id = :d", d=r.ids[0])


def _leaf_field(r: Repo) -> None:
    r.sql("UPDATE log_leaves SET at = :a WHERE dpp_id = :d", a="2020-01-01T00:00:00.000000Z", d=r.ids[0])


def _leaf_hash(r: Repo) -> None:
    r.sql("UPDATE log_leaves SET leaf_hash = :h WHERE dpp_id = :d", h=bytes(32), d=r.ids[0])


def _node_hash(r: Repo) -> None:
    index = r.leaf_of(r.ids[0])
    old = r.scalar("SELECT hash FROM log_nodes WHERE level = 0 AND idx = :i", i=index)
    r.sql("UPDATE log_nodes SET hash = :h WHERE level = 0 AND idx = :i", h=_flip(bytes(old)), i=index)


def _state_frontier(r: Repo) -> None:
    old = r.scalar("SELECT frontier FROM log_state")
    r.sql("UPDATE log_state SET frontier = :f", f=_flip(bytes(old)))


def _checkpoint_note(r: Repo) -> None:
    note: str = r.scalar("SELECT note FROM log_checkpoints")
    lines = note.split("\n")
    root = base64.b64decode(lines[2])
    lines[2] = base64.b64encode(_flip(root)).decode()
    r.sql("UPDATE log_checkpoints SET note = :n", n="\n".join(lines))


def _access_update(r: Repo) -> None:
    r.sql("UPDATE access_log SET principal = 'someone-else' WHERE id = (SELECT min(id) FROM access_log)")


def _access_delete(r: Repo) -> None:
    r.sql("DELETE FROM access_log WHERE id = (SELECT min(id) FROM access_log)")


# (tampering, the first finding starts with …, which passports are flagged: "first" or "repository")
CASES: dict[str, tuple[Callable[[Repo], None], Callable[[Repo], str], str]] = {
    "version-canonical": (_canonical, lambda r: f"version 1 of {r.ids[0]}: expected sha256 ", "first"),
    "sha256-column": (_sha_column, lambda r: f"version 1 of {r.ids[0]}: expected sha256 {'0' * 64} of its "
                      "canonical bytes", "first"),
    "signature": (_signature, lambda r: f"version 1 of {r.ids[0]}: signature: expected a valid EdDSA signature",
                  "first"),
    "public-view": (_public_view, lambda r: f"version 1 of {r.ids[0]}: expected publicSha256 ", "first"),
    "leaf-field": (_leaf_field, lambda r: f"leaf {r.leaf_of(r.ids[0])}: expected leaf hash ", "first"),
    "leaf-hash": (_leaf_hash, lambda r: f"leaf {r.leaf_of(r.ids[0])}: expected leaf hash ", "first"),
    "node-hash": (_node_hash, lambda r: f"node (level 0, index {r.leaf_of(r.ids[0])}): expected ", "first"),
    "state-frontier": (_state_frontier, lambda r: "log state: frontier hash ", "repository"),
    "checkpoint-note": (_checkpoint_note, lambda r: "checkpoint (size 4): signed note: ", "repository"),
    "access-log-update": (_access_update, lambda r: "access-log entries 1..", "repository"),
    "access-log-delete": (_access_delete, lambda r: "access-log entries 1..", "repository"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_named_and_flagged(case: str, repo: Repo, public: httpx.Client, client: httpx.Client) -> None:
    tamper, first, scope = CASES[case]
    expected = first(repo)  # before tampering: it may read the row being altered
    tamper(repo)

    code, out = repo.verify()
    assert code == 3, out
    assert out.startswith(f"1. {expected}"), out

    # the hot path (anonymous current read) only looks the flag up: nothing before the sentinel looked
    if case not in ("version-canonical",):
        assert HEADER not in public.get(f"/api/v1/dpps/{repo.ids[2]}").headers
    check = repo.sentinel.sweep()
    assert check is not None and check.findings.total >= 1
    assert check.findings.items[0].text().startswith(expected)

    flagged = repo.ids[:1] if scope == "first" else repo.ids
    for dpp_id in flagged:
        _assert_flagged(public, client, dpp_id, "passport" if scope == "first" else "repository")
    if scope == "first":
        for dpp_id in repo.ids[1:]:
            _assert_clean(public, client, dpp_id)
    listing = client.get("/api/v1/dpps", params={"limit": 1000})
    assert listing.status_code == 200
    marked = {i["dppId"] for i in listing.json()["items"] if "integrity" in i}
    assert marked == set(flagged)
    assert listing.headers[HEADER].startswith("failed")


def _assert_flagged(public: httpx.Client, client: httpx.Client, dpp_id: str, scope: str) -> None:
    reads = [public.get(f"/api/v1/dpps/{dpp_id}"),  # hot path
             client.get(f"/api/v1/dpps/{dpp_id}"),  # hot path, a token
             public.get(f"/api/v1/dpps/{dpp_id}?x=1"),  # the route
             client.get(f"/api/v1/dpps/{dpp_id}/versions"),
             client.get(f"/api/v1/dpps/{dpp_id}/versions/1"),
             client.get(f"/api/v1/dpps/{dpp_id}/elements/dppStatus"),
             client.get(f"/api/v1/dppsByIdAndDate/{dpp_id}", params={"date": "2999-01-01"})]
    for r in reads:
        assert r.status_code == 200, (r.url, r.text)
        assert r.headers.get(HEADER, "").startswith(f'failed; scope="{scope}"; reason="'), (r.url, r.headers)
    page = public.get(f"/api/v1/dpps/{dpp_id}", headers={"Accept": "text/html"})
    assert page.status_code == 200 and 'class="integrity-alert" role="alert"' in page.text
    assert "Integrity check failed" in page.text


def _assert_clean(public: httpx.Client, client: httpx.Client, dpp_id: str) -> None:
    for r in (public.get(f"/api/v1/dpps/{dpp_id}"), client.get(f"/api/v1/dpps/{dpp_id}/versions/1"),
              client.get(f"/api/v1/dpps/{dpp_id}/versions"), public.get(f"/api/v1/dpps/{dpp_id}?x=1")):
        assert r.status_code == 200 and HEADER not in r.headers, (r.url, r.headers)
    page = public.get(f"/api/v1/dpps/{dpp_id}", headers={"Accept": "text/html"})
    assert 'class="integrity-alert"' not in page.text


def test_an_altered_inner_node_flags_the_passports_below_it(repo: Repo, public: httpx.Client,
                                                             client: httpx.Client) -> None:
    old = repo.scalar("SELECT hash FROM log_nodes WHERE level = 1 AND idx = 0")
    repo.sql("UPDATE log_nodes SET hash = :h WHERE level = 1 AND idx = 0", h=_flip(bytes(old)))
    code, out = repo.verify()
    assert code == 3 and out.startswith("1. node (level 1, index 0): expected ") and "\n2. " not in out, out
    repo.sentinel.sweep()
    below = {repo.scalar("SELECT dpp_id FROM log_leaves WHERE leaf_index = :i", i=i) for i in (0, 1)}
    for dpp_id in repo.ids:
        if dpp_id in below:
            _assert_flagged(public, client, dpp_id, "passport")
        else:
            _assert_clean(public, client, dpp_id)


def test_a_deleted_leaf_is_named_and_breaks_the_whole_log(repo: Repo, public: httpx.Client) -> None:
    index = repo.leaf_of(repo.ids[1])
    repo.sql("DELETE FROM log_leaves WHERE dpp_id = :d", d=repo.ids[1])
    code, out = repo.verify()
    assert code == 3 and out.startswith(f"1. leaf {index}: expected a stored leaf (the log has 4), got none"), out
    assert f"version 1 of {repo.ids[1]}: expected a log leaf committing to it, got none" in out
    repo.sentinel.sweep()
    assert public.get(f"/api/v1/dpps/{repo.ids[1]}").headers[HEADER].startswith('failed; scope="passport"')
    assert public.get(f"/api/v1/dpps/{repo.ids[0]}").headers[HEADER].startswith('failed; scope="repository"')


def test_a_served_body_that_does_not_hash_to_its_column_is_flagged_at_once(repo: Repo, public: httpx.Client,
                                                                             client: httpx.Client) -> None:
    _canonical(repo)
    assert not repo.sentinel.active  # nobody looked yet
    r = client.get(f"/api/v1/dpps/{repo.ids[0]}/versions/1")  # a non-hot read hashes what it serves
    assert r.headers[HEADER].startswith('failed; scope="passport"; reason="served version: expected sha256 ')
    assert HEADER in public.get(f"/api/v1/dpps/{repo.ids[0]}").headers  # the hot path now knows too
    assert HEADER not in public.get(f"/api/v1/dpps/{repo.ids[1]}").headers


def test_new_versions_are_checked_as_they_are_logged(repo: Repo, client: httpx.Client,
                                                       public: httpx.Client) -> None:
    size = int(repo.scalar("SELECT size FROM log_state"))
    r = client.patch(f"/api/v1/dpps/{repo.ids[1]}", json={"performanceAndDurability": {"ratedCapacity": 1.0}})
    assert r.status_code == 200, r.text
    repo.sql("UPDATE passport_versions SET signature = NULL WHERE dpp_id = :d AND version = 2", d=repo.ids[1])
    assert repo.sentinel.check_new(since=size) == 1  # the background loop may have looked already: look again
    assert HEADER in public.get(f"/api/v1/dpps/{repo.ids[1]}").headers
    problem = repo.sentinel.problem(repo.ids[1]) or ""
    assert problem.startswith(f"version 2 of {repo.ids[1]}: ") and "its signature None" in problem
    assert HEADER not in public.get(f"/api/v1/dpps/{repo.ids[0]}").headers


def test_a_sweep_clears_repaired_rows(repo: Repo, public: httpx.Client) -> None:
    old = repo.scalar("SELECT sha256 FROM passport_versions WHERE dpp_id = :d", d=repo.ids[0])
    _sha_column(repo)
    repo.sentinel.sweep()
    assert HEADER in public.get(f"/api/v1/dpps/{repo.ids[0]}").headers
    repo.sql("UPDATE passport_versions SET sha256 = :s WHERE dpp_id = :d", s=old, d=repo.ids[0])
    repo.sentinel.sweep()
    assert HEADER not in public.get(f"/api/v1/dpps/{repo.ids[0]}").headers
    assert repo.verify()[0] == 0


def test_a_key_inserted_into_log_keys_by_hand_is_refused(repo: Repo, public: httpx.Client) -> None:
    """Someone with database access but without DBP_SECRET_KEY adds a key of their own (to re-sign what they alter
    with it): it is not one this repository made — its private half does not decrypt with the secret — so the
    re-check names it and every read says the repository is compromised."""
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    forged = Ed25519PrivateKey.generate()
    private = forged.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    repo.sql("INSERT INTO log_keys (kid, public_key, private_encrypted, created_at, retired_at) "
             "VALUES ('lk-forged', :pub, :enc, '2000-01-01T00:00:00.000000Z', '2000-01-02T00:00:00.000000Z')",
             pub=forged.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
             enc=Fernet(Fernet.generate_key()).encrypt(private).decode())
    try:
        code, out = repo.verify()
        assert code == 3 and out.startswith("1. key lk-forged: expected a key this repository made"), out
        repo.sentinel.sweep()
        assert public.get(f"/api/v1/dpps/{repo.ids[0]}").headers[HEADER].startswith('failed; scope="repository"')
        # ... and it is never published as one of the repository's keys
        for url in ("/.well-known/jwks.json", "/api/v1/log/keys", "/.well-known/did.json"):
            r = public.get(url)
            assert r.status_code == 200 and "lk-forged" not in r.text and len(r.json()) > 0, url
        assert '"kid":"lk-' in public.get("/.well-known/jwks.json").text  # the genuine ones still are
    finally:
        repo.sql("DELETE FROM log_keys WHERE kid = 'lk-forged'")
