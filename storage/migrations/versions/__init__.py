"""Alembic revisions, oldest first.

- 0001 the schema of the first release (create_all era): tenants, users, agent devices, events;
- 0002 the full data model: groups, intervals, incidents, evidence, plans, rollups, audit log;
- 0003 dirty markers from the builder to the rollup worker (``rollup_dirty``);
- 0004 agent settings in the database: tenant, group and user overrides and their history;
- 0005 event identity per tenant: the ``event`` primary key (tenant_id, id), ``seq`` 64-bit;
- 0006 authenticated audit entries: ``audit_log.mac``;
- 0007 web console sign-in: ``web_credential`` (password hash, credential version), ``web_setup_code``.
- 0008 tenant data policies: ``tenant_policy`` (own retention period, legal hold), ``user_legal_hold``;
- 0009 work calendars: ``group_schedule``, ``tenant_holiday``, ``holiday_calendar``.
- 0010 face images: ``face_template.source`` (console or agent), ``width``, ``height``.
- 0011 the console's second factor and API tokens: ``web_second_factor`` (sealed TOTP secret),
  ``web_recovery_code``, ``web_api_token`` (sha256 of the tokens).
"""
