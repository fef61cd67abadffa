"""berth-oci as dockerd's runtime (--add-runtime berth=...): the runc drop-in, end to end.

dockerd hands containers to containerd, whose runc shim (containerd-shim-runc-v2) drives
berth-oci with runc's flags: --root/--log/--log-format json, create --bundle --pid-file,
start, state, kill [--all], delete [--force], exec --process --detach --pid-file, ps
--format json, pause/resume, update --resources -, events --stats. One private dockerd
(peers.Dockerd) serves the class; containers run with --network none.
"""
import json
import os
import shlex

import pytest

from tests.integration import peers

pytestmark = peers.needs("dockerd", "docker", "containerd", "containerd-shim-runc-v2")


class TestDocker(peers.DropInSuite):
    IMAGE = "busybox:test"
    PRIVILEGED_BLOCKED = ("docker's privileged set holds every capability and this sandbox "
                          "withholds some: capset fails with runc too")

    @pytest.fixture(scope="class")
    def engine(self, busybox_rootfs):
        yield from peers.serve(peers.Dockerd(), busybox_rootfs, self.IMAGE)

    def test_top_lists_the_container_processes(self, engine, looping):
        name = looping("dropin-top")
        proc = engine("top", name)
        assert "while true" in proc.stdout, proc.stdout + engine.runtime.report()
        assert "ps" in engine.runtime.verbs(), engine.runtime.report()

    def test_stats_no_stream(self, engine, looping):
        name = looping("dropin-stats", "--memory", "64m")
        proc = engine("stats", "--no-stream", "--format",
                      "{{.Name}} {{.MemUsage}} {{.PIDs}}", name, timeout=60)
        fields = proc.stdout.split()
        assert fields and fields[0] == name, proc.stdout + engine.runtime.report()
        # "748KiB / 64MiB 2": the usage is real and the limit is the container's.
        assert "64MiB" in proc.stdout, proc.stdout + engine.runtime.report()
        assert fields[-1] != "0", proc.stdout

    def test_state_events_ps_on_the_shims_root(self, engine, looping):
        # containerd's shim reads stats and OOM events from the cgroup itself, so `docker
        # stats` never calls `events`; ask berth-oci directly, under the shim's --root.
        name = looping("dropin-cli", "--memory", "64m")
        cid = engine.inspect(name, "{{.Id}}")
        pid = int(engine.inspect(name, "{{.State.Pid}}"))
        root = os.path.join(engine.exec_root, "runtime-runc", "moby")

        def oci(*args):
            proc = engine.call([*shlex.split(peers.runtime_command()), "--root", root,
                                *args], timeout=30)
            return json.loads(proc.stdout.splitlines()[0] if args[0] == "events"
                              else proc.stdout)

        state = oci("state", cid)
        assert (state["status"], state["pid"]) == ("running", pid), state
        event = oci("events", "--stats", cid)
        assert event["type"] == "stats" and event["id"] == cid, event
        assert event["data"]["memory"]["usage"]["limit"] == 64 * 1024 * 1024, event
        assert pid in oci("ps", "--format", "json", cid)
