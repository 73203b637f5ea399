"""The JSON shape of each thing a command prints (snapshots in tests/commands hold them)."""

from __future__ import annotations

from typing import Any

from core.archives.records import Archive
from core.deploy.model import Deployment, ProjectState
from core.projects.service import Project


def project(found: Project, state: ProjectState | str | None = None) -> dict[str, Any]:
    return {
        "name": found.name,
        "state": str(state) if state is not None else None,
        "versions": found.versions,
        "last_upload_at": found.last_upload_at,
        "created_at": found.created_at,
        "app_port": found.app_port,
    }


def deployment(found: Deployment) -> dict[str, Any]:
    return {
        "id": found.id,
        "project": found.project,
        "version": found.archive_name or None,
        "reason": str(found.reason),
        "kind": str(found.kind) if found.kind else None,
        "state": str(found.state),
        "error": found.error or None,
        "created_at": found.created_at,
        "started_at": found.started_at,
        "finished_at": found.finished_at,
    }


def archive(found: Archive, project_name: str) -> dict[str, Any]:
    return {
        "project": project_name,
        "version": found.name,
        "size": found.size,
        "status": found.status,
        "kind": found.kind,
        "message": found.message or None,
        "created_at": found.created_at,
    }
