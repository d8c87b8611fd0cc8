"""Helpers of the resolver tests (the test modules make fixtures of them): registrations and nodes inserted
directly (the registry's own service is tested in tests/registry), a client that does not follow redirects,
operator tokens, a QR reader."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from conftest import ServerThread
from dbp.access import service as access
from dbp.access.principal import Role
from dbp.identifiers import product_key
from dbp.registry.models import Registration, RegistrationAlias, RegistryNode

TS = "2027-01-01T00:00:00.000000Z"
GTIN = "09506000134352"
REPO = "https://repo.example"


def pid(serial: str, gtin: str = GTIN) -> str:
    return f"https://id.dbp.example/01/{gtin}/21/{serial}"


def registrar(session_factory: Any) -> Callable[..., str]:
    """Insert a registration (returns its id); an existing one of the same product key is replaced, so a test
    never races the auto-registration of passports it created."""

    def make(product_id: str, dpp_id: str | None = None, *, operator_id: str = "urn:dbp:op:acme",
             endpoint: str = REPO, status: str = "active", successor: str | None = None,
             predecessors: list[str] | None = None, backup: str | None = None, registration_id: str | None = None,
             aliases: tuple[str, ...] = ()) -> str:
        reg_id = registration_id or f"reg-{uuid.uuid4().hex[:12]}"
        key = product_key(product_id)
        for _ in range(3):
            try:
                with session_factory.begin() as s:
                    old = s.scalars(select(Registration.registration_id).where(Registration.product_key == key)).all()
                    if old:
                        s.execute(delete(RegistrationAlias).where(RegistrationAlias.registration_id.in_(old)))
                        s.execute(delete(Registration).where(Registration.registration_id.in_(old)))
                    s.add(Registration(
                        registration_id=reg_id, product_key=key, product_id=product_id,
                        dpp_id=dpp_id or f"urn:uuid:{uuid.uuid4()}", operator_id=operator_id, granularity="item",
                        endpoint=endpoint, backup_node_id=backup, dpp_version=1, version_hash="0" * 64,
                        status=status, successor_registration_id=successor,
                        predecessor_dpp_ids=json.dumps(predecessors) if predecessors is not None else None,
                        revision=1, registered_at=TS, updated_at=TS, registrant="test"))
                    s.flush()
                    for alias in aliases:
                        s.add(RegistrationAlias(key=product_key(alias), registration_id=reg_id, written=alias,
                                                scheme=product_key(alias).split(":", 1)[0]))
                return reg_id
            except IntegrityError:
                continue  # the auto-registration inserted it in between: replace it again
        raise AssertionError(f"could not register {product_id}")

    return make


def successor_setter(session_factory: Any) -> Callable[..., None]:
    def change(registration_id: str, successor: str | None, status: str = "superseded") -> None:
        with session_factory.begin() as s:
            reg = s.get(Registration, registration_id)
            assert reg is not None
            reg.successor_registration_id = successor
            reg.status = status
    return change


def node_maker(session_factory: Any) -> Callable[..., None]:
    """Insert or update a node of the directory."""

    def make(node_id: str, endpoint: str, *, kind: str = "repository", status: str = "active") -> None:
        with session_factory.begin() as s:
            existing = s.get(RegistryNode, node_id)
            if existing is None:
                s.add(RegistryNode(node_id=node_id, kind=kind, endpoint=endpoint, status=status, updated_at=TS))
            else:
                existing.endpoint, existing.kind, existing.status = endpoint, kind, status
    return make


def resolver_client(server: ServerThread) -> httpx.Client:
    """An anonymous client that shows redirects instead of following them."""
    return httpx.Client(base_url=server.base_url, timeout=30, follow_redirects=False)


def headers_maker(server: ServerThread, session_factory: Any) -> Callable[..., dict[str, str]]:
    """A token of a new organisation of ``role`` (default economicOperator) with ``operator_id``."""

    def make(operator_id: str, role: Role = Role.economic_operator) -> dict[str, str]:
        with session_factory.begin() as s:
            org = access.create_org(s, name=f"{role.value} {operator_id}", operator_id=operator_id, role=role)
            issued = access.create_client(s, org_id=org.id, role=role)
        r = httpx.post(f"{server.base_url}/api/v1/auth/token", data={
            "grant_type": "client_credentials", "client_id": issued.client_id,
            "client_secret": issued.client_secret})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    return make


def decode_qr(data: bytes, tmp_path: Any) -> str:
    """What a real QR reader (Debian's ``zbarimg``) reads from a PNG; fails, never skips, when it is missing."""
    import shutil
    import subprocess

    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        pytest.fail("zbarimg is missing: run scripts/ensure-zbar (Debian zbar-tools)", pytrace=False)
    path = tmp_path / "code.png"
    path.write_bytes(data)
    done = subprocess.run([zbarimg, "--raw", "-q", str(path)], capture_output=True, timeout=60)
    assert done.returncode == 0, f"zbarimg found no code (rc {done.returncode}): {done.stderr!r}"
    text: str = done.stdout.decode("utf-8")
    return text[:-1] if text.endswith("\n") else text
