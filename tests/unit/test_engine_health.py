"""Healthcheck rules without containers: commands, durations, results and the streak."""

from berth.engine import health


def test_probe_command():
    assert health.probe_command({"Test": ["CMD-SHELL", "curl -f x || exit 1"]}) == \
        ["/bin/sh", "-c", "curl -f x || exit 1"]
    assert health.probe_command({"Test": ["CMD", "true", "a"]}) == ["true", "a"]
    assert health.probe_command({"Test": ["NONE"]}) is None
    assert health.probe_command({}) is None and health.probe_command(None) is None


def test_go_duration():
    s = health.SECOND
    assert [health.go_duration(n) for n in (0, s, 30 * s, 90 * s, 3600 * s, s // 2,
                                            1500 * 1_000_000)] == \
        ["0s", "1s", "30s", "1m30s", "1h0m0s", "500ms", "1.5s"]


class _Poller:
    def register(self, fd, ev):
        pass

    def unregister(self, fd):
        pass


def _checker(**conf):
    reports, changes = [], []
    c = health.Checker(dict({"Test": ["CMD", "true"]}, **conf), ["true"], ["rt"], "id",
                       _Poller(), {}, "/nonexistent", reports.append, changes.append)
    c.start()
    return c, reports, changes


def test_results_streak_and_log():
    c, reports, changes = _checker(Retries=2)
    assert reports[-1]["Status"] == "starting"
    c._result(0, 0, "ok")
    assert changes == ["healthy"] and c.health["FailingStreak"] == 0
    c._result(0, 1, "bad")
    assert c.health["Status"] == "healthy" and c.health["FailingStreak"] == 1
    c._result(0, 1, "bad")
    assert changes == ["healthy", "unhealthy"] and c.health["FailingStreak"] == 2
    for _ in range(5):
        c._result(0, 0, "ok")
    assert len(c.health["Log"]) == 5 and c.health["Status"] == "healthy"
    assert changes[-1] == "healthy"
    c.stop()
    assert reports[-1]["Status"] == "unhealthy"


def test_failures_in_the_start_period_do_not_count():
    c, _, changes = _checker(Retries=1, StartPeriod=3600 * health.SECOND)
    c._result(0, 1, "not yet")
    assert c.health["Status"] == "starting" and c.health["FailingStreak"] == 0
    assert c.due_ns is not None
    c._result(0, 0, "up")
    c._result(0, 1, "down")
    assert changes == ["healthy", "unhealthy"]
