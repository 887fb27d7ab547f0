-- Least-privilege grants on the OA database (泛微 e-cology reference schema).
-- Variables (psql style; `claimsync db roles oa` fills them from the configuration):
--   :"schema" :"form_table" :"lines_table"   where the expense workflow lives
--   :"reader"   the extract role: reads, never writes
--   :"writer"   the write-back role: may change only the form columns claimsync owns
-- Create the two login roles first, e.g. CREATE ROLE claimsync_oa_reader LOGIN PASSWORD '…';

REVOKE ALL ON ALL TABLES IN SCHEMA :"schema" FROM :"reader", :"writer";
GRANT USAGE ON SCHEMA :"schema" TO :"reader", :"writer";

GRANT SELECT ON
    :"schema".hrmdepartment,
    :"schema".hrmresource,
    :"schema".workflow_requestbase,
    :"schema".workflow_requestlog,
    :"schema".:"form_table",
    :"schema".:"lines_table"
TO :"reader";

-- Compare-and-set reads the row it changes: the writer may read the form header,
-- and change only 报销单号 and the payment fields (SOURCE_SYSTEMS.md "Who owns what").
GRANT SELECT ON :"schema".:"form_table" TO :"writer";
GRANT UPDATE (bxdh, fkzt, fkrq, pzh) ON :"schema".:"form_table" TO :"writer";
