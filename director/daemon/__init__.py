"""The daemon's composition root: ``lvsd run`` builds the parts and applies their events.

``director`` (the packet loop and the single writer of the model), ``run`` (start-up),
``reload`` (SIGHUP as config-diff events), ``nanny`` and ``pulse`` (the bridges to the
``healthcheck`` and ``failover`` leaves), ``group`` and ``announce`` (active-active: sync
with the other directors, and the VIPs announced over BGP through BIRD), ``reaper`` (the
dead-man helper process), ``snapshot`` (the connection table in ``state_dir``, ``lvsd
snapshot``) and ``takeover`` (``lvsd run --takeover``).

Border: the only subpackage that may import all the others below it (dataplane, ipvs,
ops, the leaves). Nothing imports it except the ``lvsd`` command line.
"""
