"""Commands that never run inside the daemon: ``check``, ``simulate``, ``demo``, ``agent``.

Border: may import the service layer, the data plane's pure parts, the operator's
interfaces and the ``lab``; never ``director.daemon`` (a tool talks to a running daemon
through its control socket, or starts ``lvsd run`` as a process).
"""
