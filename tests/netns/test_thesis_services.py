"""The thesis's service tests (section 7.1.1): HTTP and FTP of the virtual server and of each real.

    client 10.0.1.100 -- br-pub -- director eth0 10.0.1.1 / eth1 192.168.1.1 -- br-priv
                                   (VIP 10.0.1.5 on the thesis's lvs.cf)         |
                                                     real1 .10  real2 .11  real3 .12
                                                     labserver on 80, vsftpd on 21

* Table 25, "pruebas servicio HTTP servidor virtual": a browser asks the virtual server
  for its page and gets the page the real servers serve.
* Table 26, "prueba de servicio FTP servidor virtual": ``ftp <VIP> 21`` greets and asks
  the user to log in; after the login the service is usable (here: a listing and a file
  fetched in passive mode, which needs the director's FTP helper). A wrong login is
  refused, the table's "Login o password errónea".
* Tables 31 and 32, the same services on each real server's own address, asked from the
  director (the client has no route to the private network).
The lab's vsftpd is anonymous (the thesis logs in as a local user ``test_FTP``).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from director.config import load_config
from director.tools.demo import THESIS_CF, LabDirector
from lab.cluster import Lab, LabSpec
from tests.conftest import require_root
from tests.netns.conftest import unique_lab_name

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(shutil.which("vsftpd") is None, reason="needs Debian's vsftpd"),
]

VIP = "10.0.1.5"
REALS = {"real1": "192.168.1.10", "real2": "192.168.1.11", "real3": "192.168.1.12"}

HTTP_GET = """
import http.client, json, sys
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=10)
c.request("GET", "/")
r = c.getresponse()
print(json.dumps({"status": r.status, "body": r.read().decode(errors="replace")}))
"""

FTP_LOGIN = """
import ftplib, json, sys
ftp = ftplib.FTP(timeout=10)
ftp.trust_server_pasv_ipv4_address = True
out = {"welcome": ftp.connect(sys.argv[1], 21)}
try:
    ftp.login(sys.argv[2], "secreto")
    out["login"] = "230"
    out["names"] = ftp.nlst()
    got = []
    ftp.retrbinary("RETR name.txt", got.append)
    out["name"] = b"".join(got).decode().strip()
    ftp.quit()
except ftplib.error_perm as e:
    out["refused"] = str(e)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_root()
    lab = Lab(LabSpec(), unique_lab_name())
    try:
        lab.up(reals=3, ftp=True)
        with LabDirector(lab, load_config(THESIS_CF)):
            yield lab
    finally:
        lab.down()


def _json(lab: Lab, node: str, code: str, *args: str) -> dict[str, Any]:
    done = lab.run(node, [sys.executable, "-c", code, *args])
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_table_25_http_of_the_virtual_server(lab: Lab) -> None:
    r = _json(lab, "client", HTTP_GET, VIP)
    assert r["status"] == 200
    assert str(r["body"]).strip() in REALS


def test_table_26_ftp_of_the_virtual_server(lab: Lab) -> None:
    r = _json(lab, "client", FTP_LOGIN, VIP, "anonymous")
    assert str(r["welcome"]).startswith("220")
    assert r["login"] == "230"
    assert "name.txt" in r["names"]
    assert r["name"] in REALS
    bad = _json(lab, "client", FTP_LOGIN, VIP, "test_FTP")
    assert str(bad["refused"]).startswith("530")


@pytest.mark.parametrize("real", sorted(REALS))
def test_table_31_http_of_each_real_server(lab: Lab, real: str) -> None:
    r = _json(lab, "director", HTTP_GET, REALS[real])
    assert r["status"] == 200
    assert str(r["body"]).strip() == real


@pytest.mark.parametrize("real", sorted(REALS))
def test_table_32_ftp_of_each_real_server(lab: Lab, real: str) -> None:
    r = _json(lab, "director", FTP_LOGIN, REALS[real], "anonymous")
    assert str(r["welcome"]).startswith("220")
    assert r["login"] == "230"
    assert r["name"] == real
