"""In-flight registry, completed count and the stall snapshot (herdsman.runtime.inflight)."""

import asyncio

from herdsman.runtime.inflight import Completed, in_flight_snapshot, running_request_key, track_in_flight


def test_the_snapshot_lists_the_blocking_request_first_then_http_oldest_first_then_websockets():
    registry = {
        1: ("GET", "/old", 10.0),
        2: ("WEBSOCKET", "/ws", 1.0),
        3: ("POST", "/new", 19.0),
        4: ("GET", "/blocker", 18.0),
    }
    listed, total = in_flight_snapshot(registry, now=20.0, running=4, limit=3)
    assert total == 4
    assert listed == [
        {"method": "GET", "path": "/blocker", "age": 2.0, "blocking": True},
        {"method": "GET", "path": "/old", "age": 10.0},
        {"method": "POST", "path": "/new", "age": 1.0},
    ]


def test_tracking_counts_completed_requests_and_fires_the_threshold_once():
    seen = []

    async def app(scope, receive, send):
        seen.append(dict(registry))
        if scope.get("path") == "/boom":
            raise RuntimeError("boom")

    registry = {}
    completed = Completed()
    fired = []
    completed.report_at = 2
    completed.on_threshold = lambda: fired.append(completed.count)
    tracked = track_in_flight(app, registry, completed)

    async def drive():
        await tracked({"type": "lifespan"}, None, None)  # passes through, not counted
        await tracked({"type": "http", "method": "GET", "path": "/a"}, None, None)
        try:
            await tracked({"type": "http", "method": "GET", "path": "/boom"}, None, None)
        except RuntimeError:
            pass
        await tracked({"type": "websocket", "path": "/ws"}, None, None)

    asyncio.run(drive())
    assert completed.count == 3
    assert fired == [2]
    assert registry == {}
    assert [list(r.values())[0][:2] for r in seen[1:]] == [("GET", "/a"), ("GET", "/boom"), ("WEBSOCKET", "/ws")]


def test_no_running_request_is_found_outside_a_request():
    import threading

    tracked = track_in_flight(None, {}, Completed())
    assert running_request_key(threading.get_ident(), tracked.__code__) is None
