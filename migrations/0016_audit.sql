-- The audit log: who did what to which account's data, from where, and how it ended. Rows are
-- written in the transaction of the change they describe (a refused attempt in a short one of
-- its own), and never changed: UPDATE and DELETE are refused except by the retention job,
-- which sets 'ghst.audit_retention' for its own transaction only.
-- No foreign keys: an entry outlives the account, project or token it names.

CREATE TABLE audit_events (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_kind      text NOT NULL
        CHECK (actor_kind IN ('user', 'admin', 'token', 'system', 'anonymous')),
    actor_user_id   bigint,
    actor_label     text NOT NULL,
    token_id        bigint,
    origin          text NOT NULL CHECK (origin IN (
        'dashboard', 'command', 'sftp', 'admin', 'scheduler', 'cli', 'ssh', 'internal')),
    action          text NOT NULL,
    target_kind     text,
    target_id       bigint,
    target_name     text,
    -- The account whose data the target is: it sees the entry beside its own actions.
    owner_id        bigint,
    outcome         text NOT NULL CHECK (outcome IN ('ok', 'refused', 'failed')),
    source_address  text,
    request_id      text,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- A user's own listing (what they did, what was done to their data), newest first.
CREATE INDEX audit_events_actor ON audit_events (actor_user_id, id DESC);
CREATE INDEX audit_events_owner ON audit_events (owner_id, id DESC);
-- Operators' filters.
CREATE INDEX audit_events_action ON audit_events (action, id DESC);
CREATE INDEX audit_events_target ON audit_events (target_kind, target_name, id DESC);
CREATE INDEX audit_events_at ON audit_events (at);
-- The cap on refused and failed entries per account, and per address (failed logins under
-- names with no account).
CREATE INDEX audit_events_unhappy_actor ON audit_events (actor_user_id, at)
    WHERE outcome <> 'ok';
CREATE INDEX audit_events_unhappy_source ON audit_events (source_address, at)
    WHERE outcome <> 'ok' AND actor_user_id IS NULL;

CREATE FUNCTION ghst_audit_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('ghst.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit entries are never changed or deleted (only retention prunes them)'
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_immutable BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION ghst_audit_immutable();

-- Open audit screens load again: the entry's owner and its actor are told (ids only).
CREATE FUNCTION ghst_audit_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ghst_publish('audit', NULL, NEW.owner_id, NULL);
    IF NEW.actor_user_id IS DISTINCT FROM NEW.owner_id THEN
        PERFORM ghst_publish('audit', NULL, NEW.actor_user_id, NULL);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER audit_events_publish AFTER INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION ghst_audit_event();
