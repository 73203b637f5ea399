-- Projects (one subdomain each) and the archives uploaded to them.

ALTER TABLE users ADD COLUMN storage_quota_bytes bigint NOT NULL DEFAULT 1073741824;

CREATE TABLE projects (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- A DNS label: <name>.<domain>. Unique across all users.
    name text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT project_name_format CHECK (name ~ '^[a-z][a-z0-9-]{1,38}[a-z0-9]$')
);
CREATE INDEX projects_user_id ON projects (user_id);

-- Every upload, accepted or refused: refused ones stay as history with the reason.
CREATE TABLE archives (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- 1, 2, 3... per project for accepted archives; NULL for refused ones.
    version integer,
    filename text NOT NULL,
    size bigint NOT NULL,
    status text NOT NULL CHECK (status IN ('ready', 'rejected')),
    message text NOT NULL DEFAULT '',
    kind text,
    storage_key text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, version),
    CHECK ((status = 'ready') = (version IS NOT NULL AND storage_key IS NOT NULL))
);
CREATE INDEX archives_project_id ON archives (project_id, created_at);
