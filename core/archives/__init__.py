"""Archive versions of a project: the upload path, its checks, the quota and object storage."""
