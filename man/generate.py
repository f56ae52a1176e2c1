"""Writes lvsd.8 and lvsadm.8 next to this file from the commands' option definitions.

Run ``make man`` (or ``python man/generate.py``) after changing an option; a unit test
fails while the files here differ from what the definitions give.
"""

from __future__ import annotations

from pathlib import Path

from director.cli import build_parser
from director.ops.manpage import lvsadm_page, lvsd_page

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    (HERE / "lvsd.8").write_text(lvsd_page(build_parser()))
    (HERE / "lvsadm.8").write_text(lvsadm_page())
    print(f"wrote {HERE / 'lvsd.8'} and {HERE / 'lvsadm.8'}")
