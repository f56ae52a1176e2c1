"""Heartbeat failover between two directors in the manner of Piranha's pulse."""
