-- Invoices: one per account and month, numbered without gaps, never changed once issued.

-- The plan version a charge paid for, so that a month with a plan change shows each plan's days
-- (NULL for other kinds, and for charges posted before this column existed).
ALTER TABLE ledger ADD COLUMN plan_id bigint REFERENCES plans (id);

-- The installation's last invoice number, one row. A sequence would leave a gap for every
-- rolled-back issue; this row is incremented in the invoice's own transaction instead (its lock
-- makes issuers take turns, its rollback gives the number back).
CREATE TABLE invoice_numbers (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_number bigint NOT NULL DEFAULT 0 CHECK (last_number >= 0)
);
INSERT INTO invoice_numbers DEFAULT VALUES;

CREATE TABLE invoices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number bigint NOT NULL UNIQUE CHECK (number > 0),
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The first day of the month it bills.
    month date NOT NULL CHECK (extract(day FROM month) = 1),
    currency text NOT NULL,
    -- What the lines add up to, in kopecks: charges positive, credits negative.
    total bigint NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, month)
);

-- Copies of what the invoice says (project and plan names included), so that a later rename,
-- plan change or deletion never changes an issued invoice.
CREATE TABLE invoice_lines (
    invoice_id bigint NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    position integer NOT NULL CHECK (position > 0),
    description text NOT NULL,
    project_name text,
    plan_name text,
    days integer CHECK (days > 0),
    amount bigint NOT NULL,
    PRIMARY KEY (invoice_id, position)
);

-- Which ledger entries an invoice billed: each entry is billed once, on one invoice.
CREATE TABLE invoice_entries (
    ledger_id bigint PRIMARY KEY REFERENCES ledger (id) ON DELETE CASCADE,
    invoice_id bigint NOT NULL REFERENCES invoices (id) ON DELETE CASCADE
);
CREATE INDEX invoice_entries_invoice ON invoice_entries (invoice_id);

-- Months every account's invoice was issued for: a later run starts looking after them.
CREATE TABLE invoice_runs (
    month date PRIMARY KEY,
    finished_at timestamptz NOT NULL DEFAULT now()
);

-- Issued means final: no update or delete by a statement of its own (a deleted account's
-- cascade still removes its invoices), and lines or entries only in the issuing transaction
-- (now() is that transaction's start, savepoints included: xmin would name a subtransaction).
CREATE FUNCTION ghst_invoice_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF EXISTS (SELECT 1 FROM invoices
                   WHERE id = NEW.invoice_id AND issued_at = now()) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'an issued invoice never changes: corrections go on the next one'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF pg_trigger_depth() > 1 THEN
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION 'an issued invoice never changes: corrections go on the next one'
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER invoices_final BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION ghst_invoice_final();
CREATE TRIGGER invoice_lines_final BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION ghst_invoice_final();
CREATE TRIGGER invoice_entries_final BEFORE INSERT OR UPDATE OR DELETE ON invoice_entries
    FOR EACH ROW EXECUTE FUNCTION ghst_invoice_final();
