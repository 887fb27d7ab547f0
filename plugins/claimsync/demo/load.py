"""Bulk-load demo rows with COPY: one connection and one transaction per system, in a thread.

The generating thread hands pyarrow tables over a small bounded queue; the loader thread
turns each into CSV (pyarrow releases the GIL) and streams it with ``COPY … FROM STDIN``.
Both systems load in parallel; memory is bounded by the queue. The tables are truncated
in the same transaction first, so COPY can write the rows already frozen (no hint-bit
rewrite on the first read) — the demo only ever loads empty tables.
"""

from __future__ import annotations

import io
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from claimsync.db import qualified, quote_ident, raw_cursor

_WRITE_OPTIONS = pa_csv.WriteOptions(include_header=False, batch_size=65_536)
_COPY_BUFFER = 1 << 20


def table_csv(table: pa.Table) -> bytes:
    """CSV for COPY: no header, nulls as empty unquoted fields, every string quoted."""
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink, _WRITE_OPTIONS)
    return sink.getvalue()


@dataclass
class TableStats:
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0  # CSV writing and COPY, in the loader thread


@dataclass
class LoadStats:
    """What was loaded, per ``system.table``."""

    tables: dict[str, TableStats] = field(default_factory=dict)

    def add(self, name: str, rows: int, size: int, seconds: float) -> None:
        entry = self.tables.setdefault(name, TableStats())
        entry.rows += rows
        entry.bytes += size
        entry.seconds += seconds

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())


class _Abort(Exception):
    """The producer failed: roll the load back."""


class SystemLoader:
    """COPY tables into one database, in a background thread, inside one transaction.

    ``tables`` maps each logical name to (real table name, columns); ``serials`` names the
    tables whose ``id`` sequence must be moved past the loaded ids.
    """

    _DONE = object()
    _ABORT = object()

    def __init__(
        self,
        engine: Engine,
        system: str,
        schema: str,
        tables: Mapping[str, tuple[str, Sequence[str]]],
        *,
        serials: Sequence[str] = (),
        stats: LoadStats | None = None,
    ) -> None:
        self.engine = engine
        self.system = system
        self.schema = schema
        self.tables = dict(tables)
        self.serials = tuple(serials)
        self.stats = stats if stats is not None else LoadStats()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"demo-copy-{system}", daemon=True)

    def __enter__(self) -> SystemLoader:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self._put(self._ABORT, check=False)
            self._thread.join()
            return
        self._put(self._DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def put(self, name: str, table: pa.Table) -> None:
        """Queue ``table`` for the logical table ``name``; blocks while the loader is behind."""
        if table.num_rows:
            self._put((name, table))

    def _put(self, item: object, *, check: bool = True) -> None:
        while True:
            if check and self._error is not None:
                raise self._error
            if not self._thread.is_alive() and self._error is not None:
                if check:
                    raise self._error
                return
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            with self.engine.begin() as conn:
                names = ", ".join(qualified(conn, self.schema, real) for real, _ in self.tables.values())
                conn.exec_driver_sql(f"TRUNCATE {names}")
                sql = {
                    name: (
                        f"COPY {qualified(conn, self.schema, real)} "
                        f"({', '.join(quote_ident(conn, c) for c in columns)}) "
                        "FROM STDIN WITH (FORMAT csv, FREEZE true)"
                    )
                    for name, (real, columns) in self.tables.items()
                }
                with raw_cursor(conn) as cursor:
                    while True:
                        item = self._queue.get()
                        if item is self._DONE:
                            break
                        if item is self._ABORT:
                            raise _Abort
                        assert isinstance(item, tuple)
                        name, table = item
                        started = time.perf_counter()
                        payload = table_csv(table)
                        cursor.copy_expert(sql[name], io.BytesIO(payload), size=_COPY_BUFFER)
                        seconds = time.perf_counter() - started
                        self.stats.add(f"{self.system}.{self.tables[name][0]}", table.num_rows, len(payload), seconds)
                for name in self.serials:
                    real = qualified(conn, self.schema, self.tables[name][0])
                    conn.execute(
                        sa.text(f"SELECT setval(pg_get_serial_sequence(:t, 'id'), (SELECT max(id) FROM {real}))"),
                        {"t": real},
                    )
                for real, _ in self.tables.values():
                    conn.exec_driver_sql(f"ANALYZE {qualified(conn, self.schema, real)}")
        except _Abort:
            pass
        except BaseException as exc:  # handed to the producer thread, which re-raises it
            self._error = exc
            while True:  # unblock a producer waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
