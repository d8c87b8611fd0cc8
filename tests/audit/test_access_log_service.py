"""The access log service against the real test database (SQLite, and PostgreSQL when configured):
appends, visibility per viewer, filters, keyset pagination, CSV export and the unusual-pattern summary."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from sqlalchemy import func, select

from dbp.access.principal import ANONYMOUS, Principal, PrincipalKind, Role
from dbp.audit import service
from dbp.audit.models import AccessLog
from dbp.audit.service import AccessRecord, record, record_many
from dbp.db import transaction
from dbp.errors import BadRequest, Unauthorized

OPERATOR_A = Principal(PrincipalKind.client, "client-a", org_id="org-a", operator_id="EO-A",
                       role=Role.economic_operator)
OPERATOR_B = Principal(PrincipalKind.client, "client-b", org_id="org-b", operator_id="EO-B",
                       role=Role.economic_operator)
PROVIDER_A = Principal(PrincipalKind.client, "sp-a", org_id="org-sp", operator_id="EO-A", role=Role.service_provider)
RECYCLER = Principal(PrincipalKind.client, "rec-1", org_id="org-r", role=Role.recycler, purpose="dismantling")
AUTHORITY = Principal(PrincipalKind.user, "inspector", org_id="org-msa", role=Role.market_surveillance)
COMMISSION = Principal(PrincipalKind.user, "ec", org_id="org-ec", role=Role.commission)
ORPHAN = Principal(PrincipalKind.user, "orphan", role=Role.repairer)  # no organisation
BARE_OPERATOR = Principal(PrincipalKind.user, "bare", role=Role.economic_operator)  # neither org nor operator id


def at(n: int) -> str:
    """The n-th minute of 2027-03-01 in the stored form."""
    return f"2027-03-01T{n // 60:02d}:{n % 60:02d}:00.000000Z"


def rec(who: Principal, n: int, *, dpp: str | None = "urn:uuid:p1", operator: str | None = "EO-A",
        action: str = "read", outcome: str = "granted", detail: list[str] | None = None,
        reason: str | None = None) -> AccessRecord:
    return AccessRecord.of(who, action=action, dpp_id=dpp, passport_operator_id=operator,
                           detail=detail if detail is not None else ["point1"], outcome=outcome, reason=reason,
                           request_id=f"req-{n}", at=at(n))


# (request number, who, passport, its operator, action, outcome)
SCENARIO = [
    (1, RECYCLER, "urn:uuid:p1", "EO-A", "read", "granted"),
    (2, ANONYMOUS, "urn:uuid:p1", "EO-A", "read", "granted"),
    (3, ANONYMOUS, "urn:uuid:p2", "EO-B", "read", "granted"),
    (4, OPERATOR_A, "urn:uuid:p1", "EO-A", "update", "granted"),
    (5, RECYCLER, "urn:uuid:p2", "EO-B", "readElement", "denied"),
    (6, OPERATOR_B, "urn:uuid:p2", "EO-B", "read", "granted"),
    (7, OPERATOR_A, "urn:uuid:p2", "EO-B", "read", "denied"),
    (8, PROVIDER_A, "urn:uuid:p3", "EO-A", "create", "granted"),
    (9, AUTHORITY, "urn:uuid:p2", "EO-B", "readVersion", "granted"),
]


@pytest.fixture()
def scenario(session_factory: Any) -> Any:
    with transaction(session_factory) as s:
        record_many(s, [rec(who, n, dpp=dpp, operator=op, action=action, outcome=outcome,
                            reason="no grant for this purpose" if outcome == "denied" else None)
                        for n, who, dpp, op, action, outcome in SCENARIO])
    return session_factory


def request_numbers(page: dict[str, Any]) -> list[int]:
    return [int(it["requestId"].removeprefix("req-")) for it in page["items"]]


def visible(factory: Any, viewer: Principal, **filters: Any) -> list[int]:
    with factory() as s:
        return request_numbers(service.query(s, viewer=viewer, limit=1000, **filters))


# ------------------------------------------------------------------------------------ appending
def test_record_stores_every_field(session_factory: Any) -> None:
    r = AccessRecord.of(RECYCLER, action="readElement", dpp_id="urn:uuid:p1", passport_operator_id="EO-A",
                        detail=["point1", "point2"], outcome="granted", request_id="cid-1")
    with transaction(session_factory) as s:
        record(s, r)
    with session_factory() as s:
        [it] = service.query(s, viewer=AUTHORITY)["items"]
    assert isinstance(it.pop("id"), int)
    assert it == {"at": r.at, "requestId": "cid-1", "principal": "rec-1", "principalKind": "client",
                  "orgId": "org-r", "role": "recycler", "purpose": "dismantling", "dppId": "urn:uuid:p1",
                  "passportOperatorId": "EO-A", "action": "readElement", "detail": ["point1", "point2"],
                  "outcome": "granted", "reason": None}
    assert len(r.at) == 27 and r.at.endswith("Z")


def test_record_shares_the_callers_transaction(session_factory: Any) -> None:
    with pytest.raises(RuntimeError), transaction(session_factory) as s:
        record(s, rec(OPERATOR_A, 1, action="update"))
        raise RuntimeError("the change failed")
    with transaction(session_factory) as s:
        record(s, rec(OPERATOR_A, 2, action="update"))
    assert visible(session_factory, AUTHORITY) == [2]


def test_record_many_keeps_order_and_ignores_an_empty_batch(session_factory: Any) -> None:
    with transaction(session_factory) as s:
        record_many(s, [])
        record_many(s, [rec(RECYCLER, n) for n in (5, 3, 9, 1)])
    with session_factory() as s:
        ids = list(s.scalars(select(AccessLog.request_id).order_by(AccessLog.id)))
    assert ids == ["req-5", "req-3", "req-9", "req-1"]


def test_oversize_and_nul_values_are_fitted_not_refused(session_factory: Any) -> None:
    long_purpose = Principal(PrincipalKind.client, "c" * 300, org_id="o" * 80, role=Role.recycler,
                             purpose="p" * 100)
    r = AccessRecord.of(long_purpose, action="read", dpp_id="urn:uuid:p1", detail=["a\x00b"], outcome="denied",
                        reason="bad\x00reason", request_id="r" * 200)
    with transaction(session_factory) as s:
        record(s, r)
    with session_factory() as s:
        [it] = service.query(s, viewer=AUTHORITY)["items"]
    assert it["purpose"] == "p" * 63 + "…" and it["principal"] == "c" * 255 + "…"
    assert len(it["orgId"]) == 64 and len(it["requestId"]) == 128
    assert it["reason"] == "bad\ufffdreason"


def test_outcome_is_granted_or_denied() -> None:
    with pytest.raises(ValueError):
        AccessRecord.of(RECYCLER, action="read", detail=None, outcome="maybe", request_id="x")


def test_no_update_or_delete_exists() -> None:
    assert not [name for name in dir(service) if name.startswith(("update", "delete", "remove", "purge"))]


# ------------------------------------------------------------------------------------ visibility
def test_authorities_see_everything(scenario: Any) -> None:
    assert visible(scenario, AUTHORITY) == [9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert visible(scenario, COMMISSION) == [9, 8, 7, 6, 5, 4, 3, 2, 1]


def test_an_operator_sees_accesses_to_its_passports_and_its_own_actions(scenario: Any) -> None:
    # 1, 2, 4, 8: passports of EO-A (whoever read them); 7: org-a's own (denied) read of EO-B's passport
    assert visible(scenario, OPERATOR_A) == [8, 7, 4, 2, 1]
    assert visible(scenario, OPERATOR_B) == [9, 7, 6, 5, 3]


def test_a_service_provider_sees_its_operators_passports_and_its_own_actions(scenario: Any) -> None:
    assert visible(scenario, PROVIDER_A) == [8, 4, 2, 1]


def test_other_roles_see_only_their_organisations_accesses(scenario: Any) -> None:
    assert visible(scenario, RECYCLER) == [5, 1]
    colleague = Principal(PrincipalKind.client, "other-rec", org_id="org-r", role=Role.recycler)
    assert visible(scenario, colleague) == [5, 1]


def test_no_organisation_sees_nothing_not_even_anonymous_records(scenario: Any) -> None:
    assert visible(scenario, ORPHAN) == []
    assert visible(scenario, BARE_OPERATOR) == []


def test_anonymous_is_refused(scenario: Any) -> None:
    with scenario() as s, pytest.raises(Unauthorized):
        service.query(s, viewer=ANONYMOUS)
    with scenario() as s, pytest.raises(Unauthorized):
        service.summary(s, viewer=ANONYMOUS)


# ------------------------------------------------------------------------------------ filters
@pytest.mark.parametrize(("filters", "expected"), [
    ({"dpp_id": "urn:uuid:p2"}, [9, 7, 6, 5, 3]),
    ({"principal": "rec-1"}, [5, 1]),
    ({"principal": "anonymous"}, [3, 2]),
    ({"org_id": "org-a"}, [7, 4]),
    ({"purpose": "dismantling"}, [5, 1]),
    ({"outcome": "denied"}, [7, 5]),
    ({"outcome": "granted", "dpp_id": "urn:uuid:p2"}, [9, 6, 3]),
    ({"action": "update"}, [4]),
    ({"since": at(3), "until": at(6)}, [6, 5, 4, 3]),
    ({"since": "2027-03-01T00:03:00+00:00", "until": "2027-03-01T01:06:00+01:00"}, [6, 5, 4, 3]),
    ({"since": "2027-03-01", "until": "2027-03-01"}, [9, 8, 7, 6, 5, 4, 3, 2, 1]),
    ({"until": "2027-02-28"}, []),
    ({"since": "2027-03-02"}, []),
    ({"dpp_id": "urn:uuid:none"}, []),
])
def test_filters(scenario: Any, filters: dict[str, Any], expected: list[int]) -> None:
    assert visible(scenario, AUTHORITY, **filters) == expected


def test_filters_apply_within_visibility(scenario: Any) -> None:
    assert visible(scenario, OPERATOR_A, dpp_id="urn:uuid:p2") == [7]
    assert visible(scenario, RECYCLER, outcome="granted") == [1]


@pytest.mark.parametrize("bad", [{"outcome": "maybe"}, {"since": "yesterday"}, {"until": "2027-03-01T10:00:00"},
                                 {"limit": 0}, {"limit": 1001}, {"cursor": "abc"}, {"cursor": "-5"},
                                 {"cursor": "0"}, {"cursor": "00012"}, {"cursor": "99999999999999999999"},
                                 {"cursor": "١٢"}])
def test_bad_parameters_are_refused(scenario: Any, bad: dict[str, Any]) -> None:
    with scenario() as s, pytest.raises(BadRequest):
        service.query(s, viewer=AUTHORITY, **bad)


# ------------------------------------------------------------------------------------ pagination
def test_keyset_pagination_newest_first(session_factory: Any) -> None:
    with transaction(session_factory) as s:
        record_many(s, [rec(RECYCLER, n) for n in range(1, 26)])
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        with session_factory() as s:
            page = service.query(s, viewer=RECYCLER, cursor=cursor, limit=10)
        pages += 1
        seen += request_numbers(page)
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(range(25, 0, -1))


def test_a_page_that_ends_exactly_has_no_next_cursor(session_factory: Any) -> None:
    with transaction(session_factory) as s:
        record_many(s, [rec(RECYCLER, n) for n in range(1, 11)])
    with session_factory() as s:
        page = service.query(s, viewer=RECYCLER, limit=10)
    assert len(page["items"]) == 10 and page["nextCursor"] is None


def test_new_records_do_not_shift_pages(session_factory: Any) -> None:
    with transaction(session_factory) as s:
        record_many(s, [rec(RECYCLER, n) for n in range(1, 6)])
    with session_factory() as s:
        first = service.query(s, viewer=RECYCLER, limit=2)
    with transaction(session_factory) as s:
        record_many(s, [rec(RECYCLER, n) for n in range(6, 9)])
    with session_factory() as s:
        second = service.query(s, viewer=RECYCLER, limit=2, cursor=first["nextCursor"])
    assert request_numbers(first) == [5, 4] and request_numbers(second) == [3, 2]


# ------------------------------------------------------------------------------------ CSV
def test_csv_is_rfc4180_and_round_trips(scenario: Any) -> None:
    with scenario() as s:
        items = service.query(s, viewer=AUTHORITY)["items"]
    data = service.to_csv(items)
    text = data.decode()
    assert text.startswith(",".join(service.CSV_COLUMNS) + "\r\n")
    assert text.count("\r\n") == len(items) + 1 and "\n" not in text.replace("\r\n", "")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(service.CSV_COLUMNS)
    assert [r[2] for r in rows[1:]] == [it["requestId"] for it in items]
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["detail"] == '["point1"]' and first["reason"] == "" and first["orgId"] == "org-msa"


def test_csv_quotes_separators_quotes_and_line_breaks() -> None:
    items = [{"id": 1, "principal": 'a,b', "purpose": 'say "hi"', "reason": "line1\r\nline2", "detail": ["x", "y"],
              "orgId": None}]
    text = service.to_csv(items).decode()
    line = text.split("\r\n", 1)[1]
    assert line.startswith('1,,,"a,b",,,,"say ""hi""",,,,"[""x"",""y""]",,"line1\r\nline2"')
    [_, row] = list(csv.reader(io.StringIO(text, newline="")))
    assert row[3] == "a,b" and row[7] == 'say "hi"' and row[11] == '["x","y"]' and row[13] == "line1\r\nline2"


@pytest.mark.parametrize("payload", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"])
def test_csv_defuses_formulas(payload: str) -> None:
    text = service.to_csv([{"id": 1, "principal": payload, "reason": payload}]).decode()
    [_, row] = list(csv.reader(io.StringIO(text, newline="")))
    assert row[3] == "'" + payload and row[13] == "'" + payload


def test_csv_leaves_ordinary_cells_alone() -> None:
    text = service.to_csv([{"id": 7, "at": at(1), "principal": "a=b", "reason": "x-y"}]).decode()
    [_, row] = list(csv.reader(io.StringIO(text, newline="")))
    assert row[:4] == ["7", at(1), "", "a=b"] and row[13] == "x-y"


def test_csv_of_nothing_is_the_header() -> None:
    assert service.to_csv([]) == (",".join(service.CSV_COLUMNS) + "\r\n").encode()


# ------------------------------------------------------------------------------------ summary
def reader(name: str, role: Role, org: str = "org-x") -> Principal:
    return Principal(PrincipalKind.client, name, org_id=org, role=role)


def reads(who: Principal, passports: int, *, start: int = 0, outcome: str = "granted", n0: int = 0,
          action: str = "read", operator: str = "EO-A") -> list[AccessRecord]:
    return [rec(who, n0 + i, dpp=f"urn:uuid:{start + i}", operator=operator, action=action, outcome=outcome)
            for i in range(passports)]


def test_summary_flags_read_volume_far_above_role_peers(session_factory: Any) -> None:
    recyclers = [reader(f"rec-{i}", Role.recycler) for i in range(5)]
    heavy, mid = reader("rec-heavy", Role.recycler), reader("rec-mid", Role.recycler)
    purchasers = [reader("pur-1", Role.purchaser), reader("pur-2", Role.purchaser), reader("pur-3", Role.purchaser)]
    batch: list[AccessRecord] = []
    for r in recyclers:
        batch += reads(r, 4)
        batch += reads(r, 4)  # the same passports again: distinct passports count, not reads
    batch += reads(heavy, 30) + reads(heavy, 30, action="readElement")
    batch += reads(mid, 19)  # > 3 × median 4, but under the minimum of 20
    batch += reads(heavy, 50, start=1000, outcome="denied")  # denied reads are not reads
    batch += reads(purchasers[0], 25) + reads(purchasers[1], 10) + reads(purchasers[2], 10)  # 25 ≤ 3 × 10
    batch += reads(mid, 30, start=2000, action="update")  # writes are not reads
    with transaction(session_factory) as s:
        record_many(s, batch)
    with session_factory() as s:
        out = service.summary(s, viewer=AUTHORITY)
    assert [e["principal"] for e in out["unusualReadVolume"]] == ["rec-heavy"]
    [entry] = out["unusualReadVolume"]
    assert entry["distinctPassportsRead"] == 30 and entry["reads"] == 60 and entry["roleMedian"] == 4
    assert entry["role"] == "recycler" and entry["orgId"] == "org-x" and entry["principalsOfRole"] == 7
    assert "30 distinct passports" in entry["reason"] and "7.5×" in entry["reason"]
    assert out["thresholds"] == {"readFactor": 3, "readMinimum": 20, "denialMinimum": 5}
    # rec-heavy was denied 50 times
    assert [(e["principal"], e["denials"], e["distinctPassports"]) for e in out["repeatedDenials"]] == [
        ("rec-heavy", 50, 50)]


def test_summary_flags_repeated_denials_from_five(session_factory: Any) -> None:
    five, four = reader("five", Role.repairer), reader("four", Role.repairer)
    batch = reads(five, 5, outcome="denied") + reads(four, 4, outcome="denied")
    with transaction(session_factory) as s:
        record_many(s, batch)
    with session_factory() as s:
        out = service.summary(s, viewer=AUTHORITY)
    [entry] = out["repeatedDenials"]
    assert entry["principal"] == "five" and entry["denials"] == 5 and entry["role"] == "repairer"
    assert entry["lastDenial"] == at(4) and "denied 5 times" in entry["reason"]
    assert out["unusualReadVolume"] == []


def test_summary_respects_the_time_window(session_factory: Any) -> None:
    who = reader("w", Role.repairer)
    with transaction(session_factory) as s:
        record_many(s, reads(who, 6, outcome="denied"))  # minutes 0..5
    with session_factory() as s:
        inside = service.summary(s, viewer=AUTHORITY, since=at(0), until=at(5))
        narrow = service.summary(s, viewer=AUTHORITY, since=at(2))
    assert inside["repeatedDenials"][0]["denials"] == 6 and inside["since"] == at(0)
    assert narrow["repeatedDenials"] == []


def test_summary_sees_only_visible_records(session_factory: Any) -> None:
    who = reader("w", Role.repairer, org="org-r")
    with transaction(session_factory) as s:
        record_many(s, reads(who, 5, outcome="denied", operator="EO-B"))
    with session_factory() as s:
        assert service.summary(s, viewer=OPERATOR_A)["repeatedDenials"] == []
        assert len(service.summary(s, viewer=OPERATOR_B)["repeatedDenials"]) == 1
        assert len(service.summary(s, viewer=who)["repeatedDenials"]) == 1


def test_count_is_exact_after_the_scenario(scenario: Any) -> None:
    with scenario() as s:
        assert s.scalar(select(func.count()).select_from(AccessLog)) == len(SCENARIO)
