"""Shared by tests that count the statements an audited change costs."""


def writes_entries(sql: str) -> bool:
    """The statement that writes audit entries together: an INSERT, or on PostgreSQL a COPY."""
    return sql.startswith(('INSERT INTO "auditlog_logentry"', 'COPY "auditlog_logentry"'))
