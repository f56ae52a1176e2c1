"""An OpenSSH server on every lab real, for nanny's ``load_monitor = uptime`` over ssh.

Piranha's nanny read a real's load with ``rsh|ssh REAL uptime`` (lvs.cf ``rsh_command``);
the lab gives each real Debian's sshd, key-based only, inside the lab:

* ``<run_dir>/ssh/`` holds one host key (all reals share it), one client key, the
  ``authorized_keys`` with that client key, a ``known_hosts`` naming the reals' subnet
  with the host key, an ``sshd_config`` and an ``ssh_config``. Nothing outside the lab's
  directory is written, bar ``/run/sshd`` (sshd's privilege-separation directory, empty,
  as Debian's package makes it at boot).
* sshd runs in the real's network namespace and in a mount namespace of its own, where
  the real's ``loadavg`` (see ``lab.loadmeter``) is bind-mounted over /proc/loadavg: a
  command run over ssh sees the real's own load.
* A client uses the lab's ``ssh_config`` by running under ``client_argv``: a private
  mount namespace with it bind-mounted over /etc/ssh/ssh_config (ssh reads its user's
  files by the password database, not $HOME; this touches no file of the host).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Network
from pathlib import Path

from lab.errors import LabError

SSH_PORT = 22
PRIVSEP_DIR = Path("/run/sshd")

SSHD_CONFIG = """\
# lvsd lab: key-based root login for nanny's load monitor, nothing else.
ListenAddress {address}:{port}
HostKey {dir}/host_ed25519
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
PidFile none
LogLevel ERROR
"""

SSH_CONFIG = """\
# lvsd lab: how the lab's director reaches the reals' sshd.
Host {pattern}
    User root
    IdentityFile {dir}/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile {dir}/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 5
    LogLevel ERROR
"""


def make_keys(ssh_dir: Path, private_net: IPv4Network) -> None:
    """Host and client keys, authorized_keys and known_hosts for the reals of ``private_net``."""
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    for name in ("host_ed25519", "id_ed25519"):
        key = ssh_dir / name
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"lvsd-lab {name}",
                 "-f", str(key)],
                check=True, capture_output=True,
            )  # fmt: skip
    (ssh_dir / "authorized_keys").write_text((ssh_dir / "id_ed25519.pub").read_text())
    host_pub = " ".join((ssh_dir / "host_ed25519.pub").read_text().split()[:2])
    (ssh_dir / "known_hosts").write_text(f"{host_pattern(private_net)} {host_pub}\n")
    (ssh_dir / "ssh_config").write_text(
        SSH_CONFIG.format(pattern=host_pattern(private_net), dir=ssh_dir)
    )


def host_pattern(net: IPv4Network) -> str:
    """An ssh host pattern for every address of ``net`` (a /8, /16 or /24)."""
    if net.prefixlen not in (8, 16, 24):
        raise LabError(f"lab sshd: the reals' network must be a /8, /16 or /24, got {net}")
    kept = net.prefixlen // 8
    octets = str(net.network_address).split(".")[:kept]
    return ".".join([*octets, *["*"] * (4 - kept)])


def sshd_argv(ssh_dir: Path, conf_dir: Path, address: str, loadavg: Path) -> list[str]:
    """Write the real's sshd_config; the command that runs sshd with its own loadavg."""
    conf = conf_dir / "sshd_config"
    conf.write_text(SSHD_CONFIG.format(address=address, port=SSH_PORT, dir=ssh_dir))
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    script = 'mount --bind "$0" /proc/loadavg && exec /usr/sbin/sshd -D -e -f "$1"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(loadavg),
            str(conf)]  # fmt: skip


def client_argv(ssh_dir: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` run with the lab's ssh_config as the system's (see the module docstring).

    The shell execs ``argv``, so the process keeps the pid it was started with.
    """
    script = 'mount --bind "$0" /etc/ssh/ssh_config && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script,
            str(ssh_dir / "ssh_config"), *argv]  # fmt: skip
