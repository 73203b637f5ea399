-- Running out of money: suspension after a grace period, automatic resume, promised payments.

-- Since when each account's balance has been zero or below: the grace period runs from here.
-- Kept by triggers on balances, so every way money moves (a charge, a top-up, an operator's
-- adjustment) counts, and only when the balance crosses zero (no cost to ordinary entries).
CREATE TABLE arrears (
    user_id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    since timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION ghst_track_arrears() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kopecks <= 0 THEN
        INSERT INTO arrears (user_id) VALUES (NEW.user_id) ON CONFLICT (user_id) DO NOTHING;
    ELSE
        DELETE FROM arrears WHERE user_id = NEW.user_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER balances_arrears_new AFTER INSERT ON balances
    FOR EACH ROW WHEN (NEW.kopecks <= 0) EXECUTE FUNCTION ghst_track_arrears();
CREATE TRIGGER balances_arrears_crossed AFTER UPDATE OF kopecks ON balances
    FOR EACH ROW WHEN ((OLD.kopecks <= 0) IS DISTINCT FROM (NEW.kopecks <= 0))
    EXECUTE FUNCTION ghst_track_arrears();
INSERT INTO arrears (user_id) SELECT user_id FROM balances WHERE kopecks <= 0;

-- Promised payments: credit of a few days' spend, taken back at the next top-up or when it
-- expires, whichever comes first (`settled_at`, with the ledger entry that took it back).
CREATE TABLE promised_payments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amount bigint NOT NULL CHECK (amount > 0),
    taken_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ledger_id bigint NOT NULL,
    settled_at timestamptz,
    settled_ledger_id bigint
);
CREATE INDEX promised_payments_user ON promised_payments (user_id, taken_at);
CREATE INDEX promised_payments_open ON promised_payments (expires_at) WHERE settled_at IS NULL;

-- Whether the owner had stopped the project before it was suspended: a resume then puts back
-- the owner's stopped page instead of starting it.
ALTER TABLE project_plans ADD COLUMN stopped_before_suspension boolean NOT NULL DEFAULT false;
