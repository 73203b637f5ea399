-- `:billing`'s revenue per month and invoices, read-only views over the owners' tables (as in
-- migration 0017), and the serving processes `:system` lists.

-- Payments (top-ups) by when they came, summed from an index alone like the day's charges.
CREATE INDEX ledger_topups_by_time ON ledger (created_at) INCLUDE (amount) WHERE kind = 'topup';
CREATE VIEW admin_payments AS
SELECT created_at, amount FROM ledger WHERE kind = 'topup';

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
