-- What a compose deployment needs after its build, kept as data so any worker on any host (and
-- a later version of the panel) can roll back to it, stop it or start it: the checked app and
-- the file compose runs, as a JSON document with a format number (core/runtime/compose/state.py).
-- `json`, not `jsonb`: the text is kept as written, key order included. Owned by
-- core/runtime/compose/stacks.py alone.
CREATE TABLE compose_stacks (
    deployment_id bigint PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    state json NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now()
);
