-- Stop, start and delete of a project run through the deployments queue like deploys, so a
-- panel process without Docker serves the dashboard and a worker with Docker does the work.
-- `operation` tells what a queued row asks for; history and project states read 'deploy' rows.
ALTER TABLE deployments ADD COLUMN operation text NOT NULL DEFAULT 'deploy'
    CHECK (operation IN ('deploy', 'stop', 'start', 'delete'));

-- The project's name, kept on the row (projects are never renamed), so the deployments' owner
-- reads its rows without querying the projects table.
ALTER TABLE deployments ADD COLUMN project_name text;
UPDATE deployments d SET project_name = p.name FROM projects p WHERE p.id = d.project_id;
ALTER TABLE deployments ALTER COLUMN project_name SET NOT NULL;

-- 'working': a worker carries out an operation; 'done': it did.
ALTER TABLE deployments DROP CONSTRAINT deployments_state_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_state_check CHECK (state IN
    ('queued', 'building', 'starting', 'working', 'running', 'done', 'failed', 'cancelled',
     'superseded'));

-- Still one job per project at a time, operations included.
DROP INDEX deployments_one_active;
CREATE UNIQUE INDEX deployments_one_active ON deployments (project_id)
    WHERE state IN ('building', 'starting', 'working');
