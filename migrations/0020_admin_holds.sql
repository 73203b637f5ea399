-- Projects an admin suspended (abuse, say). Apart from billing's suspension for non-payment
-- (project_plans.suspended_at): a top-up never lifts this one, and an admin's resume never
-- lifts that one; a project runs again only once neither holds it. `stopped_before`: the
-- owner had stopped it, so a resume puts back the owner's stopped page instead of starting it.
CREATE TABLE admin_holds (
    project_id bigint PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    held_at timestamptz NOT NULL DEFAULT now(),
    held_by bigint REFERENCES users (id) ON DELETE SET NULL,
    reason text NOT NULL DEFAULT '' CHECK (length(reason) <= 200),
    stopped_before boolean NOT NULL DEFAULT false
);

-- `:projects` shows both holds (a view only gains columns at its end).
CREATE OR REPLACE VIEW admin_projects AS
SELECT p.id, p.name, p.user_id, u.username, p.created_at, p.stopped,
       p.live_deployment_id,
       pl.code AS plan_code, pl.version AS plan_version, pl.cpu_millicores, pl.ram_mb,
       pl.disk_mb, pl.max_services, pp.price_kopecks, pp.suspended_at,
       d.id AS last_deployment_id, d.state AS last_deployment_state,
       d.created_at AS last_deployment_at,
       CASE
           WHEN d.state IN ('queued', 'building', 'starting', 'working') THEN 'deploying'
           WHEN p.live_deployment_id IS NULL AND d.state = 'failed' THEN 'failed'
           WHEN p.live_deployment_id IS NULL THEN 'new'
           WHEN p.stopped THEN 'stopped'
           ELSE 'running'
       END AS state,
       h.held_at AS admin_held_at
FROM projects p
JOIN users u ON u.id = p.user_id
LEFT JOIN project_plans pp ON pp.project_id = p.id
LEFT JOIN plans pl ON pl.id = pp.plan_id
LEFT JOIN admin_holds h ON h.project_id = p.id
LEFT JOIN LATERAL (
    SELECT id, state, created_at FROM deployments
    WHERE project_id = p.id AND operation = 'deploy'
    ORDER BY id DESC LIMIT 1
) d ON true;

-- A hold taken or lifted is a 'project' event (core/events.py): the owner's dashboard and the
-- operators' `:projects` redraw without polling, even for a project with nothing to stop.
CREATE FUNCTION ghst_admin_hold_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed bigint := CASE TG_OP WHEN 'DELETE' THEN OLD.project_id ELSE NEW.project_id END;
BEGIN
    PERFORM ghst_publish('project', changed,
                         (SELECT user_id FROM projects WHERE id = changed), NULL);
    RETURN NULL;
END $$;
CREATE TRIGGER admin_holds_publish AFTER INSERT OR DELETE ON admin_holds
    FOR EACH ROW EXECUTE FUNCTION ghst_admin_hold_event();
