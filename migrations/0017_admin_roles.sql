-- Roles for the operators' app: a user, an operator (reads everything, changes nothing) or an
-- admin. `is_admin` keeps its meaning (role admin) and becomes derived, so the two never
-- disagree whoever writes the role.

ALTER TABLE users ADD COLUMN role text NOT NULL DEFAULT 'user'
    CHECK (role IN ('user', 'operator', 'admin'));
UPDATE users SET role = 'admin' WHERE is_admin;
ALTER TABLE users DROP COLUMN is_admin;
ALTER TABLE users ADD COLUMN is_admin boolean GENERATED ALWAYS AS (role = 'admin') STORED;

-- A role change ends the account's logins (core/identity/accounts.py revokes them in the same
-- transaction, and the sessions' trigger of migration 0010 tells every serving process).

-- The admin app's searches: prefix filters on names and emails, one key's fingerprint, and
-- keyset pages in name order. Each one an index, so a keystroke never scans a table.
CREATE INDEX users_username_prefix ON users (username text_pattern_ops);
CREATE INDEX users_email_prefix ON users (lower(email) text_pattern_ops);
CREATE INDEX ssh_keys_fingerprint ON ssh_keys (fingerprint);
CREATE INDEX projects_name_prefix ON projects (name text_pattern_ops);
CREATE INDEX projects_user_name ON projects (user_id, name);
CREATE INDEX project_plans_plan ON project_plans (plan_id);
-- The newest real deployment of a project (operations left out), for a page's states.
CREATE INDEX deployments_project_deploys ON deployments (project_id, id DESC)
    WHERE operation = 'deploy';

-- Read models of the admin app (core/admin/): one row per project or user with what an
-- operator looks at, joined here once. They are read-only: every change goes through the
-- owning module's service, with its checks. A project's state follows
-- core.deploy.model.project_state (tests/integration/test_admin_views.py holds them equal).
CREATE VIEW admin_projects AS
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
       END AS state
FROM projects p
JOIN users u ON u.id = p.user_id
LEFT JOIN project_plans pp ON pp.project_id = p.id
LEFT JOIN plans pl ON pl.id = pp.plan_id
LEFT JOIN LATERAL (
    SELECT id, state, created_at FROM deployments
    WHERE project_id = p.id AND operation = 'deploy'
    ORDER BY id DESC LIMIT 1
) d ON true;

CREATE VIEW admin_users AS
SELECT u.id, u.username, u.email, u.role, u.created_at, u.blocked_at,
       coalesce(b.kopecks, 0) AS balance_kopecks,
       (SELECT count(*) FROM projects p WHERE p.user_id = u.id) AS projects,
       (SELECT count(*) FROM ssh_keys k WHERE k.user_id = u.id) AS keys,
       (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.revoked_at IS NULL
            AND s.expires_at > now()) AS sessions
FROM users u
LEFT JOIN balances b ON b.user_id = u.id;

-- Every plan version with the number of projects on it (an index count per version).
CREATE VIEW admin_plans AS
SELECT pl.id, pl.code, pl.version, pl.name, pl.price_kopecks, pl.cpu_millicores, pl.ram_mb,
       pl.disk_mb, pl.max_services, pl.retired, pl.created_at,
       (SELECT count(*) FROM project_plans pp WHERE pp.plan_id = pl.id) AS projects
FROM plans pl;

-- The deployments queue across every project and worker, newest first; the active ones (the
-- admin app's default) from a partial index.
CREATE INDEX deployments_active ON deployments (id DESC)
    WHERE state IN ('queued', 'building', 'starting', 'working');
CREATE VIEW admin_deployments AS
SELECT d.id, d.project_name, u.username, d.operation, d.reason, d.state, d.archive_name,
       d.worker, d.lease_expires_at, d.attempts, d.cancel_requested, d.created_at,
       d.started_at, d.finished_at
FROM deployments d
JOIN users u ON u.id = d.user_id;

-- Billing at a glance: the accounts at or below zero (their grace period runs from `since`),
-- with their suspended projects; and each day's charges, summed from an index alone.
CREATE VIEW admin_arrears AS
SELECT u.id, u.username, coalesce(b.kopecks, 0) AS balance_kopecks, a.since,
       (SELECT count(*) FROM project_plans pp
        WHERE pp.user_id = u.id AND pp.suspended_at IS NOT NULL) AS suspended_projects
FROM arrears a
JOIN users u ON u.id = a.user_id
LEFT JOIN balances b ON b.user_id = u.id;
CREATE INDEX ledger_charges_by_day ON ledger (day) INCLUDE (amount) WHERE kind = 'charge';
CREATE VIEW admin_charges AS
SELECT day, amount FROM ledger WHERE kind = 'charge';
