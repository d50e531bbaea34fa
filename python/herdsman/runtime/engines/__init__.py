"""HTTP engines behind one contract.

An engine module serves the loaded app on the inherited listeners and keeps the worker's side of
the master contract (docs/protocol.md): `ready` once it serves, heartbeats from its event loop,
in-flight and completed counts, `stopping`, graceful and quick stops. Today there is one:
`engines.uvicorn` (uvicorn.Server, with a2wsgi for WSGI apps). Each exposes
`serve(args, engine, app, interface, channel, listeners, started) -> exit code`.
"""
