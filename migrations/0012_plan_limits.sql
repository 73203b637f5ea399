-- Plans get a pids limit (processes and threads of a project's containers together). Existing
-- versions get one per tariff from their RAM, an eighth of a process per MiB and never under
-- 256 (the panel's default before plans): Free 256, Host-0 512, Host-1 1024, Host-2 2048.
ALTER TABLE plans ADD COLUMN pids integer NOT NULL DEFAULT 256 CHECK (pids > 0);
UPDATE plans SET pids = greatest(256, ram_mb / 8);
ALTER TABLE plans ALTER COLUMN pids DROP DEFAULT;

-- pids is part of a version like the rest: it never changes in place.
DROP TRIGGER plans_never_change ON plans;
CREATE TRIGGER plans_never_change BEFORE UPDATE OF code, version, name, price_kopecks,
    cpu_millicores, ram_mb, disk_mb, max_services, pids ON plans
    FOR EACH ROW EXECUTE FUNCTION ghst_plan_immutable();
