-- Events: a change to what the dashboard shows is published with NOTIFY on 'ghst_events' in the
-- same transaction as the write, whichever code or process made it; listeners (core/events.py)
-- fan it out to the sessions watching that user or project. The payload names rows by id only
-- (kind, project, owner, deployment), never tenant text. The deployment queue's own NOTIFY on
-- 'ghst_deployments' (waking workers) is separate and unchanged.

CREATE FUNCTION ghst_publish(kind text, project_id bigint, owner_id bigint, deployment_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- No owner: the project is being deleted, and its own event tells the watchers.
    IF owner_id IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_notify('ghst_events', json_build_object(
        'k', kind, 'p', project_id, 'u', owner_id, 'd', deployment_id)::text);
END $$;

CREATE FUNCTION ghst_deployment_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text := 'deployment';
    probe deployments;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        -- A worker renews its lease every few seconds: that changes nothing anyone sees. A
        -- change of the build log alone is 'log', so screens that do not show it sleep on.
        probe := NEW;
        probe.lease_expires_at := OLD.lease_expires_at;
        probe.log := OLD.log;
        IF probe IS NOT DISTINCT FROM OLD THEN
            IF NEW.log IS NOT DISTINCT FROM OLD.log THEN
                RETURN NULL;
            END IF;
            kind := 'log';
        END IF;
    END IF;
    PERFORM ghst_publish(kind, NEW.project_id,
        (SELECT user_id FROM projects WHERE id = NEW.project_id), NEW.id);
    RETURN NULL;
END $$;

CREATE TRIGGER deployments_publish AFTER INSERT OR UPDATE ON deployments
    FOR EACH ROW EXECUTE FUNCTION ghst_deployment_event();

CREATE FUNCTION ghst_archive_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed archives;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    PERFORM ghst_publish('archive', changed.project_id,
        (SELECT user_id FROM projects WHERE id = changed.project_id), NULL);
    RETURN NULL;
END $$;

CREATE TRIGGER archives_publish AFTER INSERT OR UPDATE OR DELETE ON archives
    FOR EACH ROW EXECUTE FUNCTION ghst_archive_event();

CREATE FUNCTION ghst_project_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed projects;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW IS NOT DISTINCT FROM OLD THEN
        RETURN NULL;
    END IF;
    PERFORM ghst_publish('project', changed.id, changed.user_id, NULL);
    RETURN NULL;
END $$;

CREATE TRIGGER projects_publish AFTER INSERT OR UPDATE OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION ghst_project_event();

CREATE FUNCTION ghst_env_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed project_env;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    PERFORM ghst_publish('env', changed.project_id,
        (SELECT user_id FROM projects WHERE id = changed.project_id), NULL);
    RETURN NULL;
END $$;

CREATE TRIGGER project_env_publish AFTER INSERT OR UPDATE OR DELETE ON project_env
    FOR EACH ROW EXECUTE FUNCTION ghst_env_event();
