"""The IPVS service layer: virtual services, their destinations, persistence and rates.

What ``ip_vs_ctl.c``, ``ip_vs_core.c``'s scheduling half and ``ip_vs_est.c`` hold in the
kernel: services and destinations with their counters, the trash of deleted
destinations, persistence templates, and binding a new connection to a destination
chosen by a ``scheduling`` leaf.

Border: imports ``director.dataplane`` (the connection table it binds to), the
``scheduling`` leaf and ``director.errors``; never the operator's interfaces or the
daemon.
"""
