-- `:billing`'s revenue per month and invoices, read-only views over the owners' tables (as in
-- migration 0017), and the serving processes `:system` lists.

-- Revenue per month without reading a year of ledger entries (a charge per paying project and
-- day): each billing day's charges and each quarter hour's top-ups, added up as entries are
-- inserted (the ledger is append-only, so inserts are all there is). Quarter hours, so that
-- a month in any billing time zone (offsets are whole quarter hours) is a range of buckets.
-- A statement-level trigger, set-based over the statement's rows, as for the arrears: the
-- daily charge's one statement adds one row per day. Kept with the ledger (core/billing/ledger.py).
CREATE TABLE ledger_charge_days (
    day date PRIMARY KEY,
    kopecks bigint NOT NULL,
    entries bigint NOT NULL
);
CREATE TABLE ledger_topup_quarters (
    quarter timestamptz PRIMARY KEY,
    kopecks bigint NOT NULL,
    entries bigint NOT NULL
);
CREATE FUNCTION ghst_ledger_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_charge_days AS t (day, kopecks, entries)
        SELECT day, -sum(amount), count(*) FROM new_entries
        WHERE kind = 'charge' AND day IS NOT NULL GROUP BY day
        ON CONFLICT (day) DO UPDATE
        SET kopecks = t.kopecks + excluded.kopecks, entries = t.entries + excluded.entries;
    INSERT INTO ledger_topup_quarters AS t (quarter, kopecks, entries)
        SELECT date_bin('15 minutes', created_at, timestamptz '2000-01-01 00:00+00'),
               sum(amount), count(*)
        FROM new_entries WHERE kind = 'topup' GROUP BY 1
        ON CONFLICT (quarter) DO UPDATE
        SET kopecks = t.kopecks + excluded.kopecks, entries = t.entries + excluded.entries;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_totals AFTER INSERT ON ledger
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ghst_ledger_totals();
INSERT INTO ledger_charge_days (day, kopecks, entries)
    SELECT day, -sum(amount), count(*) FROM ledger
    WHERE kind = 'charge' AND day IS NOT NULL GROUP BY day;
INSERT INTO ledger_topup_quarters (quarter, kopecks, entries)
    SELECT date_bin('15 minutes', created_at, timestamptz '2000-01-01 00:00+00'),
           sum(amount), count(*)
    FROM ledger WHERE kind = 'topup' GROUP BY 1;
CREATE VIEW admin_charge_days AS SELECT day, kopecks, entries FROM ledger_charge_days;
CREATE VIEW admin_topup_quarters AS SELECT quarter, kopecks, entries FROM ledger_topup_quarters;

-- Every account's invoices, newest number first (the number's unique index pages them).
CREATE VIEW admin_invoices AS
SELECT i.id, i.number, i.user_id, u.username, i.month, i.currency, i.total, i.issued_at
FROM invoices i
JOIN users u ON u.id = i.user_id;

-- Each `ghst serve` process (several share the port with SO_REUSEPORT) says here that it is
-- alive, how many SSH sessions it holds and since when it serves; it renews `seen_at` every
-- few seconds, and a process gone without a word ages out of `:system` once it stops renewing
-- (and is deleted by the next process that starts or beats).
CREATE TABLE panel_processes (
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    sessions integer NOT NULL DEFAULT 0 CHECK (sessions >= 0),
    connections integer NOT NULL DEFAULT 0 CHECK (connections >= 0),
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host, pid)
);
