"""A fast server-side filler for the reconcile benchmark: N claims per side with lines.

Everything is generated inside PostgreSQL (``INSERT … SELECT generate_series``), so filling
1M claims per side takes well under a minute. The data is deterministic and shaped like the
reference systems (2.5 lines per claim, invoices, payments, approval logs), with a small
share of planted breaks so that the reconciliation has something to find. It is not the
demo generator (claimsync.demo): no answer key, no Chinese realism beyond the vocabulary.

Run as ``python -m bench._fill OA_URL EXPENSE_URL CLAIMS``.
"""

from __future__ import annotations

import sys

import sqlalchemy as sa

from claimsync.db import create_engine, raw_cursor
from claimsync.refschema import create_reference_schema

# A deterministic pseudo-random number in [0, 100) from a row number and a salt.
_R = "(abs(hashint8(({g})::bigint * 7919 + {salt})) % 100)"


def _r(g: str, salt: int) -> str:
    return _R.format(g=g, salt=salt)


OA_SQL = f"""
INSERT INTO ecology.hrmdepartment (id, departmentmark, departmentname, supdepid, canceled, modified)
SELECT g, 'D' || lpad(g::text, 3, '0'), '部门' || g, NULL, NULL, '2026-01-01 00:00:00' FROM generate_series(1, 60) g;

INSERT INTO ecology.hrmresource (id, workcode, lastname, departmentid, status, email, mobile, certificatenum,
                                 lastmoddate, lastmodtime)
SELECT g, 'E' || lpad(g::text, 6, '0'), '员工' || g, 1 + g % 60, CASE WHEN g % 211 = 0 THEN 5 ELSE 1 END,
       'e' || g || '@example.cn', '138' || lpad(g::text, 8, '0'), NULL, '2026-01-01', '00:00:00'
FROM generate_series(1, %(staff)s) g;

-- The change cursor walks forward 20 s per request from 2026-01-01 (Asia/Shanghai local text).
INSERT INTO ecology.workflow_requestbase (requestid, workflowid, requestmark, requestname, creater, createdate,
    createtime, currentnodetype, status, lastoperator, lastoperatedate, lastoperatetime, deleted)
SELECT g, 38, 'FYBX-2026-' || lpad(g::text, 7, '0'), '差旅费报销-员工' || (1 + g % %(staff)s) || '-2026',
       1 + g % %(staff)s, to_char(ts - interval '2 day', 'YYYY-MM-DD'), to_char(ts, 'HH24:MI:SS'),
       CASE WHEN {_r("g", 1)} < 85 THEN '3' WHEN {_r("g", 1)} < 93 THEN '1' ELSE '0' END,
       '归档', 1, to_char(ts, 'YYYY-MM-DD'), to_char(ts, 'HH24:MI:SS'),
       CASE WHEN {_r("g", 2)} < 1 THEN 1 ELSE 0 END
FROM generate_series(1, %(claims)s) g, LATERAL (SELECT timestamp '2026-01-01' + g * interval '20 second' AS ts) t;

INSERT INTO ecology.workflow_requestlog (logid, requestid, nodeid, logtype, operator, operatedate, operatetime,
                                         remark)
SELECT g * 3 + k, g, k, CASE k WHEN 0 THEN '2' WHEN 1 THEN '0' ELSE
           CASE WHEN r.currentnodetype = '0' AND {_r("g", 3)} < 50 THEN '3'
                WHEN r.currentnodetype = '0' THEN 'r' ELSE '0' END END,
       r.creater, r.createdate, r.createtime, '同意'
FROM ecology.workflow_requestbase r, generate_series(0, 2) k, LATERAL (SELECT r.requestid AS g) x
WHERE k < 2 OR r.currentnodetype IN ('3', '0');

INSERT INTO ecology.formtable_main_38 (id, requestid, bxdh, sqr, sqbm, bxje, bz, fkzt, fkrq, pzh)
SELECT g, g, CASE WHEN {_r("g", 4)} < 98 THEN 'B' || lpad(g::text, 8, '0') END, 1 + g % %(staff)s,
       1 + (1 + g % %(staff)s) % 60, 0, 'CNY',
       CASE WHEN currentnodetype = '3' AND {_r("g", 5)} < 70 THEN '已支付'
            WHEN currentnodetype = '3' AND {_r("g", 5)} < 75 THEN '支付中' END,
       CASE WHEN currentnodetype = '3' AND {_r("g", 5)} < 70 THEN lastoperatedate END,
       CASE WHEN currentnodetype = '3' AND {_r("g", 5)} < 70 THEN 'PZ' || g END
FROM ecology.workflow_requestbase r, LATERAL (SELECT r.requestid AS g) x;

INSERT INTO ecology.formtable_main_38_dt1 (id, mainid, fylx, je, fpdm, fphm, kprq, sm)
SELECT g * 4 + k, g, (ARRAY['差旅费','交通费','餐费','住宿费','办公用品','通讯费','招待费'])[1 + (g + k) % 7],
       (10 + (abs(hashint8(g * 4 + k)) % 500000)) / 100.0,
       CASE WHEN (g + k) % 5 < 2 THEN NULL ELSE lpad(((g * 4 + k) % 999999999999)::text, 12, '0') END,
       CASE WHEN (g + k) % 5 < 2 THEN '2644' || lpad((g * 4 + k)::text, 16, '0')
            ELSE lpad(((g * 4 + k) % 99999999)::text, 8, '0') END,
       '2026-01-01', '说明'
FROM generate_series(1, %(claims)s) g, generate_series(0, 3) k
WHERE k < 1 + abs(hashint8(g)) % 4;

UPDATE ecology.formtable_main_38 f SET bxje = s.total
FROM (SELECT mainid, sum(je) AS total FROM ecology.formtable_main_38_dt1 GROUP BY mainid) s
WHERE s.mainid = f.id;
"""

EXPENSE_SQL = f"""
INSERT INTO ekb.department (id, code, name, parent_id, active, update_time)
SELECT 'd' || g, 'D' || lpad(g::text, 3, '0'), '部门' || g, NULL, true, timestamptz '2026-01-01 00:00+08'
FROM generate_series(1, 60) g;

INSERT INTO ekb.staff (id, code, name, department_id, email, cellphone, active, update_time)
SELECT 's' || g, 'E' || lpad(g::text, 6, '0'), '员工' || g, 'd' || (1 + g % 60), 'e' || g || '@example.cn',
       '138' || lpad(g::text, 8, '0'), g % 211 <> 0, timestamptz '2026-01-01 00:00+08'
FROM generate_series(1, %(staff)s) g;

-- Mirrors the OA side claim by claim (same row number), with breaks planted at small rates.
INSERT INTO ekb.flow (id, code, form_type, title, submitter_id, department_id, sum_amount, pay_money, currency,
    state, oa_request_id, create_time, submit_time, approve_time, pay_time, voucher_no, update_time)
SELECT 'f' || g, 'B' || lpad(g::text, 8, '0'), 'expense', '差旅费报销', 's' || (1 + g % %(staff)s),
       'd' || (1 + (1 + g % %(staff)s) % 60), 0, 0, 'CNY',
       CASE WHEN {_r("g", 1)} < 85 AND {_r("g", 5)} < 70 THEN 'paid'
            WHEN {_r("g", 1)} < 85 THEN 'paying'
            WHEN {_r("g", 1)} < 93 THEN 'approving'
            WHEN {_r("g", 3)} < 50 THEN 'rejected' ELSE 'draft' END,
       CASE WHEN {_r("g", 4)} < 98 OR {_r("g", 6)} < 50 THEN g END,
       ts - interval '2 day', ts - interval '2 day', ts - interval '1 day', NULL, NULL, ts + interval '1 second'
FROM generate_series(1, %(claims)s) g,
     LATERAL (SELECT timestamptz '2026-01-01 00:00+08' + g * interval '20 second' AS ts) t
WHERE {_r("g", 7)} >= 1;

INSERT INTO ekb.flow_detail (id, flow_id, seq, fee_type, amount, invoice_code, invoice_number, invoice_date, remark)
SELECT 'fd' || (g * 4 + k), 'f' || g, k + 1,
       (ARRAY['差旅费','交通费','餐费','住宿费','办公用品','通讯费','招待费'])[1 + (g + k) % 7],
       (10 + (abs(hashint8(g * 4 + k)) % 500000)) / 100.0 + CASE WHEN {_r("g", 8)} < 1 AND k = 0 THEN 1 ELSE 0 END,
       CASE WHEN (g + k) % 5 < 2 THEN NULL ELSE lpad(((g * 4 + k) % 999999999999)::text, 12, '0') END,
       CASE WHEN (g + k) % 5 < 2 THEN '2644' || lpad((g * 4 + k)::text, 16, '0')
            ELSE lpad(((g * 4 + k) % 99999999)::text, 8, '0') END,
       date '2026-01-01', '说明'
FROM generate_series(1, %(claims)s) g, generate_series(0, 3) k
WHERE k < 1 + abs(hashint8(g)) % 4 AND {_r("g", 7)} >= 1;

UPDATE ekb.flow f SET sum_amount = s.total, pay_money = s.total
FROM (SELECT flow_id, sum(amount) AS total FROM ekb.flow_detail GROUP BY flow_id) s
WHERE s.flow_id = f.id;

INSERT INTO ekb.payment (id, flow_id, amount, status, payee_name, payee_account, create_time, finish_time,
                         update_time)
SELECT 'p' || f.id, f.id, f.pay_money, CASE WHEN f.state = 'paid' THEN 'SUCCESS' ELSE 'PROCESSING' END, '员工',
       '6222' || lpad(substr(f.id, 2), 15, '0'), f.update_time, NULL, f.update_time
FROM ekb.flow f
WHERE f.state IN ('paid', 'paying') AND {_r("substr(f.id, 2)::bigint", 9)} < 90;
"""


def fill(oa_url: str, expense_url: str, claims: int) -> None:
    """Recreate both reference schemas and fill them with ``claims`` requests/claims per side."""
    params = {"claims": claims, "staff": max(50, claims // 200)}
    for url, system, sql in ((oa_url, "oa", OA_SQL), (expense_url, "expense", EXPENSE_SQL)):
        engine = create_engine(url, system)
        try:
            create_reference_schema(engine, system, recreate=True)
            with engine.begin() as conn:
                # Whole numbers only, so plain substitution is safe (and keeps `%` the SQL operator).
                text = sql.replace("%(claims)s", str(params["claims"])).replace("%(staff)s", str(params["staff"]))
                with raw_cursor(conn) as cursor:
                    for statement in text.split(";\n"):
                        if statement.strip():
                            cursor.execute(statement)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
        finally:
            engine.dispose()


if __name__ == "__main__":
    fill(sys.argv[1], sys.argv[2], int(sys.argv[3]))
