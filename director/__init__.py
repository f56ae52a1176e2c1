"""lvsd's director: the daemon that composes scheduling, health checks and failover.

Subpackages, lowest first; each imports only those before it (``tests/unit/test_layering.py``
keeps this true and refuses import cycles):

- foundation modules here: ``errors``, ``config`` (the one lvs.cf model), ``logsetup``,
  ``stats`` (the records the parts report);
- ``dataplane``: everything a packet touches;
- ``ipvs``: the IPVS service layer;
- ``ops``: the operator's interfaces (control socket, lvsadm, metrics, systemd);
- ``daemon``: the composition root of ``lvsd run``;
- ``tools``: commands outside the daemon (check, simulate, demo, agent);
- ``cli``: the ``lvsd`` command, dispatching to the daemon and the tools.

The leaves ``scheduling``, ``healthcheck`` and ``failover`` and the ``lab`` import nothing
of this package.
"""
