"""Heartbeat failover between two directors in the manner of Piranha's pulse, and the
group channel of active-active directors (``group``)."""
