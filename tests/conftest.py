"""Store tests run on both engines: `store_url` is a fresh SQLite file or a fresh PostgreSQL database.

PostgreSQL comes from KPOPNEWS_TEST_POSTGRES_URL (a maintenance database the tests may create databases from;
default: the local server's `postgres` database as user postgres). The session creates a database of its own,
kpopnews_test_<random>, and drops it at the end. Without a reachable server the PostgreSQL cases are skipped,
with one reason; with KPOPNEWS_REQUIRE_POSTGRES=1 (CI) they fail instead."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Coroutine, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from bot.config import mask_url

MAINTENANCE_URL = os.environ.get(
    "KPOPNEWS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRED = os.environ.get("KPOPNEWS_REQUIRE_POSTGRES") == "1"
ENGINES = ["sqlite", "postgresql"]
NO_POSTGRES = "PostgreSQL not reachable at"


def database_url(name: str) -> str:
    """The maintenance URL with another database name."""
    parts = urlsplit(MAINTENANCE_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def run_sql(url: str, sql: str) -> None:
    """Run `sql` on the database at `url`, from a fixture (outside the test's event loop)."""

    async def run() -> None:
        import asyncpg

        connection = await asyncpg.connect(url, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    _in_own_thread(run())


def _in_own_thread(coroutine: Coroutine[Any, Any, None]) -> None:
    """asyncio.run in a thread of its own: it must not replace the event loop pytest-asyncio set up."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


class PostgresServer:
    """The session's PostgreSQL: databases made (and dropped) for the tests."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def create_database(self) -> str:
        name = f"kpopnews_test_{secrets.token_hex(6)}"
        try:
            # a language's order, as most servers sort text: a column the store forgot to make "C" shows
            run_sql(
                MAINTENANCE_URL,
                f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
                " LOCALE 'C.UTF-8'",
            )
        except Exception:  # no ICU, an older server: its default order
            run_sql(MAINTENANCE_URL, f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return database_url(name)

    def drop_all(self) -> None:
        for name in self.made:
            run_sql(MAINTENANCE_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        run_sql(MAINTENANCE_URL, "SELECT 1")
    except Exception as exc:  # no server, no asyncpg, refused: the one reason every PostgreSQL case shows
        reason = f"{NO_POSTGRES} {mask_url(MAINTENANCE_URL)} ({type(exc).__name__}: {exc})"
        if REQUIRED:
            pytest.fail(f"{reason}; KPOPNEWS_REQUIRE_POSTGRES=1 makes this a failure", pytrace=False)
        pytest.skip(f"{reason}; set KPOPNEWS_TEST_POSTGRES_URL to test on PostgreSQL")
    server = PostgresServer()
    yield server
    server.drop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Every PostgreSQL case skipped for want of a server reports from here, so -ra folds them into one line."""
    report = yield
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and NO_POSTGRES in str(longrepr[2]):
        report.longrepr = (__file__, None, longrepr[2])
    return report


@pytest.fixture(scope="session")
def postgres_session_url(postgres_server: PostgresServer) -> str:
    """The session's own test database (emptied by `postgres_url` before each test)."""
    return postgres_server.create_database()


@pytest.fixture
def postgres_url(postgres_session_url: str) -> str:
    """An empty PostgreSQL database: the session's, its schema dropped and made again."""
    run_sql(postgres_session_url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return postgres_session_url


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(engine: str, request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """Where a test's store lives: a new SQLite file, or an empty PostgreSQL database."""
    if engine == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "k.db")
