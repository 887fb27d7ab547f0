"""The ADBC side of bench.transport, run in its own uv environment (adbc-driver-postgresql is not a
project dependency); prints one JSON line.

``python bench/_adbc_worker.py LIBPQ_URL QUERY_FILE``: runs the query once through ADBC's
PostgreSQL driver (binary COPY → Arrow) and converts it to pandas as claimsync converts its own
frames; reports wall and CPU seconds of that alone (not the interpreter's start-up).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    import adbc_driver_postgresql.dbapi as adbc
    import pandas as pd
    import pyarrow as pa

    url, query_file = sys.argv[1], sys.argv[2]
    query = Path(query_file).read_text(encoding="utf-8")
    mapping = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    with adbc.connect(url) as conn, conn.cursor() as cursor:
        started, cpu = time.perf_counter(), _cpu()
        cursor.execute(query)
        table = cursor.fetch_arrow_table()
        frame = table.to_pandas(types_mapper=mapping.get, self_destruct=True)
        seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rows": len(frame)}))


if __name__ == "__main__":
    main()
