-- This installation's identity: every Docker object the panel makes carries it, and the panel
-- removes only objects that carry it, so two panels on one dockerd (even with the same
-- GHST_INSTANCE) never remove each other's things.
CREATE TABLE installation (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id text NOT NULL DEFAULT substr(replace(gen_random_uuid()::text, '-', ''), 1, 12)
        CHECK (id ~ '^[0-9a-f]{12}$'),
    -- A database that already had deployments before identities existed: its Docker objects
    -- carry no identity. It keeps its object names and adopts the unlabelled objects of its own
    -- deployments up to this id (and of their projects); a newer database adopts nothing.
    legacy_last_deployment bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO installation (legacy_last_deployment) SELECT max(id) FROM deployments;

-- A live deployment whose containers were found gone (removed outside the panel, or lost with
-- dockerd): when it was noticed. Cleared when they are back or another deployment goes live.
ALTER TABLE deployments ADD COLUMN missing_since timestamptz;

-- 'heal': the panel started a live deployment again from its image after its containers went.
ALTER TABLE deployments DROP CONSTRAINT deployments_reason_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_reason_check
    CHECK (reason IN ('deploy', 'redeploy', 'rollback', 'restart', 'heal'));
