"""Request-scoped dependencies: the database session of the one transaction a request runs in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dbp.config import Settings
from dbp.db import transaction

T = TypeVar("T")


async def in_transaction(request: Request, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction in a worker thread: committed before the response is built,
    rolled back on any error. Async routes use this instead of ``SessionDep`` so that the event
    loop never waits on a database lock (a sync session held by a suspended async route would
    block the loop thread that has to release it).
    """

    def run() -> T:
        with transaction(request.app.state.sessionmaker) as session:
            return work(session)

    return await run_in_threadpool(run)


def get_read_session(request: Request) -> Iterator[Session]:
    """A session for reading only (sync routes); writes go through ``in_transaction``."""
    session: Session = request.app.state.read_sessionmaker()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ReadSessionDep = Annotated[Session, Depends(get_read_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def in_read_session(request: Request, work: Callable[[Session], T]) -> T:
    """Run read-only ``work`` in a worker thread with a session that never takes SQLite's write lock."""

    def run() -> T:
        with request.app.state.read_sessionmaker() as session:
            try:
                return work(session)
            finally:
                session.rollback()

    return await run_in_threadpool(run)
