"""The operators' app's core: read models over every account (admins and operators) and the
changes admins make through the owning services (`service.AdminService`)."""
