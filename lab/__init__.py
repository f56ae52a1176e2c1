"""The namespace lab: the thesis's cluster built on one machine, for users to test their clusters.

``cluster`` builds and removes the namespaces, veths and bridges (``router``: the
scale-out shape, directors behind a BGP router with ECMP); ``server`` is the real
servers' HTTP daemon; ``loadgen`` is the client's bounded load generator.

Border: a product of its own; it imports the standard library and pyroute2, never
``director``. It runs lvsd as a process like any user would.
"""
