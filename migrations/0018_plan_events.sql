-- A project's plan changed or its suspension began or ended: published as a 'project' event
-- (core/events.py), so the dashboard redraws its plan and usage bars without polling. Inserts
-- need none: a project gets its plan in the transaction that creates it, which publishes.

CREATE FUNCTION ghst_project_plan_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ghst_publish('project', NEW.project_id, NEW.user_id, NULL);
    RETURN NULL;
END $$;

CREATE TRIGGER project_plans_publish AFTER UPDATE OF plan_id, suspended_at ON project_plans
    FOR EACH ROW WHEN (OLD.plan_id IS DISTINCT FROM NEW.plan_id
                       OR OLD.suspended_at IS DISTINCT FROM NEW.suspended_at)
    EXECUTE FUNCTION ghst_project_plan_event();
