"""The events journal: lines, rotation, filters and Docker's line format."""

from berth import events


def test_append_read_and_rotate(tmp_path, monkeypatch):
    path = str(tmp_path / "events.jsonl")
    monkeypatch.setattr(events, "MAX_SIZE", 4096)
    for i in range(200):
        events.append(path, "container", "start", f"{i:064x}", {"name": f"c{i}"})
    assert (tmp_path / "events.jsonl").stat().st_size <= 4096 + 400
    assert (tmp_path / "events.jsonl.1").stat().st_size <= 4096 + 400
    seen = [e["Actor"]["Attributes"]["name"] for e in events.read(path, since_ns=0)]
    assert seen[-1] == "c199" and seen == sorted(seen, key=lambda n: int(n[1:]))
    with open(path, "ab") as f:
        f.write(b'{"torn": ')  # a writer killed mid-line
    assert list(events.read(path, since_ns=0))[-1]["Actor"]["Attributes"]["name"] == "c199"


def test_message_shape_and_line(tmp_path):
    path = str(tmp_path / "events.jsonl")
    events.append(path, "container", "die", "a" * 64,
                  {"name": "web", "image": "busybox", "exitCode": 3})
    (ev,) = events.read(path, since_ns=0)
    assert ev["status"] == "die" and ev["id"] == "a" * 64 and ev["from"] == "busybox"
    assert ev["Actor"]["Attributes"]["exitCode"] == "3" and ev["scope"] == "local"
    assert ev["timeNano"] // 1_000_000_000 == ev["time"]
    ev["timeNano"] = 1_795_320_000_000_000_001
    assert events.format_line(ev) == ("2026-11-22T04:00:00.000000001Z container die "
                                      + "a" * 64 + " (exitCode=3, image=busybox, name=web)")


def test_filters():
    def ev(type_, action, actor, **attrs):
        return {"Type": type_, "Action": action, "Actor": {"ID": actor, "Attributes": attrs},
                "from": attrs.get("image", "")}
    web = ev("container", "health_status: healthy", "ab" * 32, name="web", image="busybox",
             tier="front")
    tag = ev("image", "tag", "sha256:" + "cd" * 32, name="busybox:1")
    assert events.matcher(["event=health_status"])(web)
    assert not events.matcher(["event=health_status: unhealthy"])(web)
    assert events.matcher(["container=web", "container=other"])(web)
    assert events.matcher(["container=abab"])(web)
    assert not events.matcher(["container=web", "type=image"])(web)
    assert events.matcher(["label=tier=front", "label=tier"])(web)
    assert not events.matcher(["label=tier=back"])(web)
    assert events.matcher(["image=busybox"])(web)
    assert events.matcher(["image=busybox:1"])(tag) and events.matcher(["image=cdcd"])(tag)
    assert not events.matcher(["image=cdcd"])(web)
    try:
        events.matcher(["colour=red"])
    except ValueError as err:
        assert "invalid filter 'colour=red'" in str(err)
    else:
        raise AssertionError("an unknown filter was accepted")
