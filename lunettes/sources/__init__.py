"""Sources: readers that turn audit logs, webhook batches and followed files into
AuditRecords (see README.md)."""
