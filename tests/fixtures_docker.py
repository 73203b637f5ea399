"""docker fixtures (filled in by the deployments work)."""
