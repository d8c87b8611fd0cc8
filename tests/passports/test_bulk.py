"""The import pipeline in-process: worker processes give exactly the outcomes of the serial path."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import select

from dbp.passports import bulk
from dbp.passports.models import PassportVersion


def _records(fleet: list[dict[str, Any]]) -> list[bulk.RecordSource]:
    docs = [orjson.dumps(d) for d in fleet[:12]]
    bad = dict(fleet[12])
    bad["generalProductInformation"] = {**bad["generalProductInformation"], "manufacturingDate": "2026-02-30"}
    docs.insert(3, docs[2])  # line 4: the same product as line 3, in the same batch
    docs.insert(5, orjson.dumps(bad))  # line 6
    recs = [bulk.RecordSource("mem", i, raw=raw) for i, raw in enumerate(docs, start=1)]
    recs.append(bulk.RecordSource("mem", 99, error=None, raw=None))
    return recs


@pytest.mark.parametrize("workers", [0, 2])
def test_outcomes_do_not_depend_on_workers(session_factory: Any, fleet: list[dict[str, Any]], workers: int) -> None:
    seen: list[int] = []
    report = bulk.import_records(session_factory, _records(fleet), batch_size=4, workers=workers,
                                 progress=seen.append)
    assert (report.created, report.updated, report.unchanged, report.failed) == (12, 0, 0, 3)
    assert [(e["line"], e["details"][0]["rule"] if e["details"] else None) for e in report.errors] == [
        (4, "import.duplicateInBatch"), (6, "date.calendar"), (99, None)]
    assert sum(seen) == 15
    with session_factory() as s:
        stored = {v.dpp_id: v.canonical for v in s.scalars(select(PassportVersion))}
    assert len(stored) == 12
    for canonical in stored.values():
        doc = orjson.loads(canonical)
        assert doc["dppSchemaVersion"] and doc["lastUpdate"]
    again = bulk.import_records(session_factory, _records(fleet), batch_size=4, workers=workers)
    assert (again.created, again.unchanged) == (0, 12)
