"""The operator's interfaces: the control socket, ipvsadm's commands and listings, metrics, systemd.

``control`` (the Unix socket protocol), ``admin`` (ipvsadm's operations on the service
layer), ``listing`` and ``lvsadm`` (ipvsadm's output and command line), ``save``,
``scrape``, ``exporter`` and ``metrics`` (a scrape's data, the listener, and the text: the
only prometheus_client import, which the daemon leaves to the child that renders),
``notify`` and ``watchdog`` (systemd).

Border: may import ``director.ipvs``, ``director.dataplane``, the foundation modules
(``config``, ``errors``, ``stats``) and the leaves' record types; never
``director.daemon``. What it shows of the daemon arrives as ``director.stats`` records.
"""
