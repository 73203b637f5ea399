-- Billing: plans (versioned), each project's plan, the ledger and balances, payments and the
-- daily charge runs. Amounts are integer kopecks (hundredths of the installation's currency).

-- A plan version is never edited: a change is a new version of the same code. Projects stay on
-- the version they took; `retired` hides a version from new projects.
CREATE TABLE plans (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL CHECK (code ~ '^[a-z0-9][a-z0-9-]{0,30}$'),
    version integer NOT NULL CHECK (version > 0),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    price_kopecks bigint NOT NULL CHECK (price_kopecks >= 0),
    cpu_millicores integer NOT NULL CHECK (cpu_millicores > 0),
    ram_mb integer NOT NULL CHECK (ram_mb > 0),
    disk_mb integer NOT NULL CHECK (disk_mb > 0),
    max_services integer NOT NULL CHECK (max_services > 0),
    retired boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (code, version),
    -- Lets project_plans copy the price with a foreign key that keeps the copy true.
    UNIQUE (id, price_kopecks)
);
CREATE FUNCTION ghst_plan_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a plan version never changes: add a new version' USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER plans_never_change BEFORE UPDATE OF code, version, name, price_kopecks,
    cpu_millicores, ram_mb, disk_mb, max_services ON plans
    FOR EACH ROW EXECUTE FUNCTION ghst_plan_immutable();

-- Each project's plan. user_id and price are copies (the charge reads this table alone); the
-- composite key keeps the price equal to the plan version's.
CREATE TABLE project_plans (
    project_id bigint PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan_id bigint NOT NULL,
    price_kopecks bigint NOT NULL,
    is_free boolean GENERATED ALWAYS AS (price_kopecks = 0) STORED,
    since timestamptz NOT NULL DEFAULT now(),
    -- The first day (in the billing time zone) this project pays for.
    billed_from date NOT NULL,
    suspended_at timestamptz,
    FOREIGN KEY (plan_id, price_kopecks) REFERENCES plans (id, price_kopecks)
);
-- At most one free project per account, whatever the races.
CREATE UNIQUE INDEX project_plans_one_free ON project_plans (user_id) WHERE is_free;
CREATE INDEX project_plans_user ON project_plans (user_id);

-- Append-only: entries are never updated or deleted (a correction is a new entry). Amounts are
-- signed: what adds to the balance is positive, a charge negative.
CREATE TABLE ledger (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('topup', 'charge', 'refund', 'adjustment', 'promised')),
    amount bigint NOT NULL CHECK (amount <> 0),
    idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    actor text NOT NULL,
    reason text NOT NULL DEFAULT '',
    project_id bigint REFERENCES projects (id) ON DELETE SET NULL,
    -- The day a charge pays for (billing time zone); NULL for other kinds.
    day date,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (CASE kind WHEN 'charge' THEN amount < 0
                     WHEN 'adjustment' THEN true
                     ELSE amount > 0 END)
);
CREATE INDEX ledger_user ON ledger (user_id, id);

-- A deleted account or project may still remove or unlink its entries (a cascade runs
-- inside the foreign key's trigger); a statement of its own may not.
CREATE FUNCTION ghst_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() > 1 THEN
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION 'the ledger is append-only' USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ghst_ledger_append_only();

-- The sum of an account's ledger, kept in the same transaction as each entry.
CREATE TABLE balances (
    user_id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    kopecks bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Payments through a provider: created pending, confirmed once from its webhook.
CREATE TABLE payments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider text NOT NULL,
    provider_payment_id text NOT NULL,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amount bigint NOT NULL CHECK (amount > 0),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'failed')),
    ledger_id bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    UNIQUE (provider, provider_payment_id)
);
CREATE INDEX payments_user ON payments (user_id, created_at);

-- Days the daily charge has run over: where a run after downtime starts catching up.
CREATE TABLE charge_runs (
    day date PRIMARY KEY,
    finished_at timestamptz NOT NULL DEFAULT now()
);
