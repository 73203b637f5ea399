"""Traffic to the apps: nginx vhosts, host ports and the readiness probe."""
