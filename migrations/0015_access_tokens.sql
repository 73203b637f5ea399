-- Access tokens: a secret that stands in for the password of one account, for commands and
-- file transfers only, limited to some scopes and maybe some projects. Only the secret's
-- SHA-256 is kept (the secret is 256 random bits: no slow hash needed), with a short prefix
-- to tell tokens apart in lists.

CREATE TABLE access_tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL,
    prefix text NOT NULL,
    secret_hash bytea NOT NULL UNIQUE,
    scopes text[] NOT NULL,
    -- NULL: every project of the owner.
    projects text[],
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at timestamptz,
    CONSTRAINT access_tokens_scopes CHECK (
        cardinality(scopes) > 0
        AND scopes <@ ARRAY['read', 'logs', 'deploy', 'env:write', 'admin']::text[]
    ),
    CONSTRAINT access_tokens_expiry CHECK (expires_at > created_at),
    CONSTRAINT access_tokens_hash_length CHECK (octet_length(secret_hash) = 32)
);
-- A revoked token's name can be reused; a live one's cannot.
CREATE UNIQUE INDEX access_tokens_live_name ON access_tokens (user_id, name)
    WHERE revoked_at IS NULL;

-- A login made with a token runs under it: revoking the token revokes its logins (whose
-- `session` events end the connections), deleting it deletes them.
ALTER TABLE sessions
    ADD COLUMN access_token_id bigint REFERENCES access_tokens (id) ON DELETE CASCADE;
CREATE INDEX sessions_access_token_id ON sessions (access_token_id)
    WHERE access_token_id IS NOT NULL AND revoked_at IS NULL;

-- Deploy keys: an SSH key limited like a token (scopes, maybe projects) instead of logging its
-- account in for everything. NULL scopes: an ordinary key. Never `admin`.
ALTER TABLE ssh_keys
    ADD COLUMN scopes text[],
    ADD COLUMN projects text[],
    ADD CONSTRAINT ssh_keys_deploy_scopes CHECK (
        scopes IS NULL
        OR (cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'logs', 'deploy', 'env:write']::text[])
    ),
    ADD CONSTRAINT ssh_keys_projects_need_scopes CHECK (projects IS NULL OR scopes IS NOT NULL);
