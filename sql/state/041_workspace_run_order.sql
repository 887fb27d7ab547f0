-- claimsync state schema, migration 041: a run's exceptions in the workspace's default order.
-- The exception list of a run pages by (amount_impact DESC, exception_id DESC) on what that
-- run saw; this index lets page 1 and page 1,000 both read just one page of index entries
-- instead of sorting the whole run (measured in bench/results/workspace.md).
CREATE INDEX workspace_run_exception_amount_idx
    ON claimsync.recon_run_exception (run_id, amount_impact DESC, exception_id DESC);
