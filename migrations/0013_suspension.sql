-- Running out of money: suspension after a grace period, automatic resume, promised payments.

-- Since when each account's balance has been zero or below: the grace period runs from here.
-- Kept by triggers on balances, so every way money moves counts (a charge, a payment, an
-- operator's adjustment, a promised payment taken back). They are statement-level, set-based
-- over the rows a statement changed: the daily charge updates every paying account's balance
-- in one statement, and a trigger per row would cost it seconds.
CREATE TABLE arrears (
    user_id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    since timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION ghst_arrears_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO arrears (user_id) SELECT user_id FROM inserted_balances WHERE kopecks <= 0
        ON CONFLICT (user_id) DO NOTHING;
    RETURN NULL;
END $$;
CREATE FUNCTION ghst_arrears_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A balance that stays below zero keeps its first date (DO NOTHING). No join with the
    -- transition table: it has no statistics, and the nested loop the planner chose made a
    -- three-day catch-up of 100,000 projects 2.5 times slower (bench/billing.py).
    INSERT INTO arrears (user_id) SELECT user_id FROM new_balances WHERE kopecks <= 0
        ON CONFLICT (user_id) DO NOTHING;
    DELETE FROM arrears
        WHERE user_id = any(ARRAY(SELECT user_id FROM new_balances WHERE kopecks > 0));
    RETURN NULL;
END $$;
CREATE TRIGGER balances_arrears_insert AFTER INSERT ON balances
    REFERENCING NEW TABLE AS inserted_balances
    FOR EACH STATEMENT EXECUTE FUNCTION ghst_arrears_after_insert();
CREATE TRIGGER balances_arrears_update AFTER UPDATE ON balances
    REFERENCING NEW TABLE AS new_balances
    FOR EACH STATEMENT EXECUTE FUNCTION ghst_arrears_after_update();
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
