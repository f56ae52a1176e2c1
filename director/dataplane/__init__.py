"""The data plane: everything a packet touches between the TUN device and the wire.

The TUN device and the host plumbing around it (VIP routes, proxy ARP, reply steering,
the NAT router), the connection table and header rewrite (the C fast path ``_fastpath``
and its pure-Python twin ``_fastpath_py``, chosen by ``fastpath``), IPv4 reassembly and
the ICMP messages the director sends itself.

Border: imports the standard library, ``director.errors`` and pyroute2 only. It
knows nothing of services, operators or the daemon; the layers above read its
counters (statistics flow out of it, never into it).
"""
