"""lvsd's director: the daemon that composes scheduling, health checks and failover."""
