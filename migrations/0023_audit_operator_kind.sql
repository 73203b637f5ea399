-- The operator role (0017) came after the audit log (0016): an operator's entries are recorded
-- as the operator they are, so `:audit actor:` and a reader tell a read-only staff member from
-- the user account it also is.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_actor_kind_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_actor_kind_check
    CHECK (actor_kind IN ('user', 'admin', 'token', 'system', 'anonymous', 'operator'));
