-- Storage quota held by uploads in progress: parallel uploads of one user share the quota
-- instead of each seeing all of it. A row lives while its upload runs (renewed as bytes
-- arrive) and is ignored once it expires, so a crashed upload's reservation never holds the
-- quota for good.
CREATE TABLE quota_reservations (
    id uuid PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    bytes bigint NOT NULL CHECK (bytes >= 0),
    expires_at timestamptz NOT NULL
);
CREATE INDEX quota_reservations_user_id ON quota_reservations (user_id, expires_at);
