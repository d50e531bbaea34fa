"""The keep-alive drain's pure parts (herdsman.runtime.drain)."""

import asyncio

from herdsman.runtime.drain import Drain, closing_send


def test_an_idle_connection_expires_only_after_a_whole_window_with_the_same_marker():
    drain = Drain()
    conn, first, second = object(), object(), object()
    assert not drain.idle_expired(conn, first, now=10.0, window=1.0)
    assert not drain.idle_expired(conn, first, now=10.9, window=1.0)
    # A request came and went between two looks: the count starts again.
    assert not drain.idle_expired(conn, second, now=11.0, window=1.0)
    assert not drain.idle_expired(conn, second, now=11.5, window=1.0)
    assert drain.idle_expired(conn, second, now=12.0, window=1.0)


def test_a_busy_connection_starts_its_idle_count_again_and_gone_ones_are_forgotten():
    drain = Drain()
    a, b = object(), object()
    drain.idle_expired(a, None, now=0.0, window=1.0)
    drain.idle_expired(b, None, now=0.0, window=1.0)
    drain.busy(a)
    assert not drain.idle_expired(a, None, now=5.0, window=1.0)
    drain.keep_only([a])
    assert not drain.idle_expired(b, None, now=5.0, window=1.0)  # b was forgotten: counts anew


def test_responses_during_a_drain_say_connection_close_in_place_of_the_apps_header():
    sent = []

    async def send(message):
        sent.append(message)

    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"Connection", b"keep-alive")],
    }
    body = {"type": "http.response.body", "body": b"hi"}

    async def drive():
        closing = closing_send(send)
        await closing(start)
        await closing(body)

    asyncio.run(drive())
    assert sent[0]["headers"] == [(b"content-type", b"text/plain"), (b"connection", b"close")]
    assert sent[1] is body
    assert start["headers"][1] == (b"Connection", b"keep-alive")  # the app's message is not changed
