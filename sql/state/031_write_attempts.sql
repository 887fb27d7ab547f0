-- claimsync state schema, migration 031: tell a batch's first apply from its recovery.
--
-- A row found already at its after-image is "applied" only when the batch was attempted
-- before (the process died between apply and confirm: DESIGN.md's recovery rule). On a
-- first attempt it was changed by someone else, or by another run: 'unchanged', nothing
-- written, so no change is ever audited twice.

ALTER TABLE claimsync.write_batch
    -- Set, in its own state transaction, before the batch's target transaction starts.
    ADD COLUMN attempted_at timestamptz NULL;

ALTER TABLE claimsync.planned_write DROP CONSTRAINT planned_write_status_check;
ALTER TABLE claimsync.planned_write ADD CONSTRAINT planned_write_status_check
    CHECK (status IN ('planned', 'applied', 'unchanged', 'conflict', 'deferred', 'reverted', 'revert_conflict'));
