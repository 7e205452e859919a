"""The group-commit writer's doorbell: work held for a window, then rung as one."""

from __future__ import annotations

from events.groupcommit import Doorbell


def test_window_zero_rings_each_hold_at_once():
    rung = []
    bell = Doorbell(rung.append, window=0)
    bell.hold(["a"])
    bell.hold(["b"])
    assert rung == [["a"], ["b"]]
    assert bell.wait() is None


def test_held_work_is_rung_together_once_its_window_has_passed():
    rung, now = [], [100.0]
    bell = Doorbell(rung.append, window=0.5, clock=lambda: now[0])
    bell.hold(["a"])
    now[0] += 0.3
    bell.hold(["b", "c"])
    assert abs(bell.wait() - 0.2) < 1e-9
    bell.ring_if_due()
    assert rung == []
    now[0] += 0.2
    bell.ring_if_due()
    assert rung == [["a", "b", "c"]]
    assert bell.wait() is None
    bell.hold(["d"])  # a new window starts with the next work
    assert abs(bell.wait() - 0.5) < 1e-9


def test_now_rings_before_the_window_ends():
    rung = []
    bell = Doorbell(rung.append, window=60)
    bell.hold(["a"])
    bell.ring_if_due(now=True)
    assert rung == [["a"]]


def test_a_failing_ring_is_logged_and_the_bell_goes_on(caplog):
    def broken(items):
        raise ConnectionError("broker down")

    bell = Doorbell(broken, window=0.01)
    bell.hold(["a"])
    bell.ring_if_due(now=True)
    assert "the sweeper will" in caplog.text
    assert bell.wait() is None  # dropped: the sweeper rings for the committed rows
