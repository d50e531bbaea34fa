"""Closing uvicorn's WebSocket connections with the code the reason calls for.

uvicorn's own shutdown sends close code 1012 (service restart) to every WebSocket. That is right
when the worker is replaced (a reload, recycling, a scale-down, an upgrade: the client should
reconnect, and will reach another worker), but on a stop of the whole server the code is 1001
(going away). This sends the close frame with a chosen code through uvicorn's two sans-I/O
implementations (`websockets-sansio`, uvicorn's default when the websockets library is installed,
and `wsproto`), exactly as their `shutdown()` does with 1012; any other implementation (the legacy
`websockets` one) keeps uvicorn's own shutdown and its 1012.

uvicorn internals used: a connection's `conn` (the sans-I/O object), `handshake_complete`,
`close_sent`, `queue`, `transport`, `stop_keepalive()`.
"""

GOING_AWAY = 1001
SERVICE_RESTART = 1012


def is_websocket(connection) -> bool:
    return hasattr(connection, "handshake_complete") and not hasattr(connection, "cycle")


def close_websocket(connection, code: int) -> None:
    """Send `code` in a close frame and close the connection (or let uvicorn do it, for an
    implementation or a state this does not know)."""
    conn = getattr(connection, "conn", None)
    known = conn is not None and (hasattr(conn, "send_close") or _wsproto_close(conn) is not None)
    if code == SERVICE_RESTART or not known or not connection.handshake_complete or connection.close_sent:
        connection.shutdown()
        return
    connection.stop_keepalive()
    connection.queue.put_nowait({"type": "websocket.disconnect", "code": code})
    if hasattr(conn, "send_close"):  # websockets' sans-I/O protocol
        conn.send_close(code)
        output = b"".join(conn.data_to_send())
    else:  # wsproto
        output = conn.send(_wsproto_close(conn)(code=code))
    connection.transport.write(output)
    connection.transport.close()


def _wsproto_close(conn):
    """wsproto's CloseConnection event class, if `conn` is a wsproto connection."""
    if type(conn).__module__.split(".")[0] != "wsproto":
        return None
    try:
        from wsproto.events import CloseConnection
    except ImportError:
        return None
    return CloseConnection
