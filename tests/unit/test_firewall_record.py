"""firewall.apply skips nft when the table's rules are those applied in this boot."""

import os

from berth.network import firewall
from berth.sys import nft


def test_apply_records_per_boot_and_forgets_deleted_tables(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(nft, "run", lambda text: calls.append(text))
    monkeypatch.setattr(firewall, "_APPLIED", str(tmp_path / "berth-nft-{}-{}.rules"))
    rules = "table inet t1 {}\ndelete table inet t1\ntable inet t1 { chain c { } }\n"
    firewall.apply(rules, "t1")
    firewall.apply(rules, "t1")
    assert calls == [rules]  # the second time nothing changed: no nft call
    old_boot = tmp_path / "berth-nft-t1-an-earlier-boot.rules"
    old_boot.write_text(rules)
    firewall.apply(rules + "# changed\n", "t1")
    assert len(calls) == 2 and not old_boot.exists()  # an earlier boot's record is gone
    firewall.apply("table inet t1 {}\ndelete table inet t1\n", "t1")
    assert len(calls) == 3 and os.listdir(tmp_path) == []  # a deleted table keeps none
