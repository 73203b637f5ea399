-- The admin app's `:audit` filters, each on an index that starts with its column and ends
-- with the id, so a filtered page is read newest first and stops at the page's size.
CREATE INDEX audit_events_label ON audit_events (actor_label, id DESC);
CREATE INDEX audit_events_target_name ON audit_events (target_name, id DESC);
CREATE INDEX audit_events_outcome ON audit_events (outcome, id DESC);
