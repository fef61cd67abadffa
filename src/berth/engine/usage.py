"""`system df`: what images, containers and volumes hold on disk, and how much of it no
container uses (Docker's TOTAL, ACTIVE, SIZE, RECLAIMABLE). berth has no build cache yet."""

import calendar
import time


def _epoch(text):
    """Seconds since the epoch of an RFC 3339 UTC time (0 when unreadable)."""
    try:
        return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except (TypeError, ValueError):
        return 0


def disk_usage(containers):
    """{"images"|"containers"|"volumes"|"build_cache": {total, active, size, reclaimable,
    items}} for a ContainerService."""
    from berth.images import reference
    from berth.images.archive import is_dangling

    records = containers.list(all_containers=True)
    images_svc = containers.images
    used_images = {}
    for r in records:
        used_images[r["image_id"]] = used_images.get(r["image_id"], 0) + 1
    items, seen = [], set()
    for rec in images_svc.records():
        try:
            image = images_svc.get(rec["name"])
        except Exception:  # noqa: BLE001 - a broken record is `system check`'s business
            continue
        if image.id in seen:
            continue
        seen.add(image.id)
        name = rec["name"]
        repo, tag = "<none>", "<none>"
        if not is_dangling(name) and "@" not in name:
            ref = reference.parse(name)
            repo, tag = ref.familiar, ref.tag or "<none>"
        items.append({"id": image.id, "repository": repo, "tag": tag,
                      "created": _epoch(image.config.get("created", "")),
                      "size": image.size(), "containers": used_images.get(image.id, 0)})
    img_size = sum(i["size"] for i in items)
    img_free = sum(i["size"] for i in items if not i["containers"])

    snap = images_svc.snapshotter()
    citems = []
    for r in records:
        try:
            size = snap.usage(r["snapshot_key"])
        except Exception:  # noqa: BLE001 - a record without its snapshot counts as empty
            size = 0
        conf = r.get("config") or {}
        command = " ".join(list(conf.get("Entrypoint") or []) + list(conf.get("Cmd") or []))
        citems.append({"id": r["id"], "name": r["name"], "image": r["image"],
                       "command": f'"{command[:17]}…"' if len(command) > 20
                       else f'"{command}"', "size": size,
                       "volumes": sum(1 for m in r.get("mounts") or ()
                                      if m.get("Type") == "volume"),
                       "created": _epoch(r.get("created", "")),
                       "status": r["state"].get("Status", ""),
                       "running": bool(r["state"].get("Running"))})
    c_size = sum(c["size"] for c in citems)
    c_free = sum(c["size"] for c in citems if not c["running"])

    vols = containers.volumes
    users = vols.users()
    vitems = [{"name": v["Name"], "links": len(users.get(v["Name"], ())),
               "size": vols.usage(v["Name"])} for v in vols.list()]
    v_size = sum(v["size"] for v in vitems)
    v_free = sum(v["size"] for v in vitems if not v["links"])
    return {
        "images": {"total": len(items), "active": sum(1 for i in items if i["containers"]),
                   "size": img_size, "reclaimable": img_free, "items": items},
        "containers": {"total": len(citems), "active": sum(c["running"] for c in citems),
                       "size": c_size, "reclaimable": c_free, "items": citems},
        "volumes": {"total": len(vitems), "active": sum(1 for v in vitems if v["links"]),
                    "size": v_size, "reclaimable": v_free, "items": vitems},
        "build_cache": {"total": 0, "active": 0, "size": 0, "reclaimable": 0, "items": []},
    }
