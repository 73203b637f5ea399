-- Session events: a user's logins changed (a session revoked, the account blocked or
-- unblocked), published on 'ghst_events' in the same transaction, whichever process made it.
-- Serving processes re-check that user's live connections on it instead of polling every
-- login each second. The payload names the user by id only (migration 0008's format).

CREATE FUNCTION ghst_session_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- "Log out everywhere" revokes many rows in one statement: identical payloads in one
    -- transaction are delivered once by PostgreSQL.
    IF NEW.revoked_at IS NOT DISTINCT FROM OLD.revoked_at
            AND NEW.expires_at IS NOT DISTINCT FROM OLD.expires_at THEN
        RETURN NULL;
    END IF;
    PERFORM ghst_publish('session', NULL, NEW.user_id, NULL);
    RETURN NULL;
END $$;

CREATE TRIGGER sessions_publish AFTER UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION ghst_session_event();

CREATE FUNCTION ghst_blocked_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ghst_publish('session', NULL, NEW.id, NULL);
    RETURN NULL;
END $$;

CREATE TRIGGER users_blocked_publish AFTER UPDATE OF blocked_at ON users
    FOR EACH ROW WHEN (NEW.blocked_at IS DISTINCT FROM OLD.blocked_at)
    EXECUTE FUNCTION ghst_blocked_event();

-- A deleted session or account ends its logins as surely as a revoked one.
CREATE FUNCTION ghst_session_gone_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ghst_publish('session', NULL, OLD.user_id, NULL);
    RETURN NULL;
END $$;

CREATE TRIGGER sessions_deleted_publish AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION ghst_session_gone_event();
