-- Deployments: one row per attempt, queued in PostgreSQL and claimed by workers with a lease.

ALTER TABLE projects
    -- The port the app listens on inside its container; NULL: the image's EXPOSE, else 8080.
    ADD COLUMN app_port integer CHECK (app_port BETWEEN 1 AND 65535),
    -- Stopped by its owner: nginx answers 503 until it is started again.
    ADD COLUMN stopped boolean NOT NULL DEFAULT false;

CREATE TABLE deployments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- Who asked for it (the owner today; operators later).
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    archive_id bigint REFERENCES archives (id) ON DELETE SET NULL,
    -- Kept when the archive is deleted, so the history still says what was deployed.
    archive_name text NOT NULL,
    -- A rollback or restart reuses this deployment's image instead of building.
    source_id bigint REFERENCES deployments (id) ON DELETE SET NULL,
    reason text NOT NULL DEFAULT 'deploy'
        CHECK (reason IN ('deploy', 'redeploy', 'rollback', 'restart')),
    kind text CHECK (kind IN ('dockerfile', 'compose')),
    state text NOT NULL DEFAULT 'queued' CHECK (state IN
        ('queued', 'building', 'starting', 'running', 'failed', 'cancelled', 'superseded')),
    error text NOT NULL DEFAULT '',
    image text,
    -- The compose project name for compose deployments (one stack per deployment).
    stack text,
    port integer,
    app_port integer,
    log text NOT NULL DEFAULT '',
    worker text,
    lease_expires_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX deployments_project ON deployments (project_id, id DESC);
CREATE INDEX deployments_queued ON deployments (id) WHERE state = 'queued';
-- One deployment per project is worked on at a time, whatever the number of workers.
CREATE UNIQUE INDEX deployments_one_active ON deployments (project_id)
    WHERE state IN ('building', 'starting');

-- The deployment that nginx sends the project's traffic to.
ALTER TABLE projects
    ADD COLUMN live_deployment_id bigint REFERENCES deployments (id) ON DELETE SET NULL;

-- Host ports on 127.0.0.1 given to app containers: unique, freed with their deployment.
CREATE TABLE ports (
    port integer PRIMARY KEY CHECK (port BETWEEN 1 AND 65535),
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    deployment_id bigint NOT NULL UNIQUE REFERENCES deployments (id) ON DELETE CASCADE,
    allocated_at timestamptz NOT NULL DEFAULT now()
);

-- Environment variables of a project, applied when its containers are next created.
CREATE TABLE project_env (
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'),
    value text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, name)
);
