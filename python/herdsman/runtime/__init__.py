"""The herdsman worker runtime: what runs inside every worker process.

The master runs `PYTHON RUNTIME_DIR/herdsman_worker.py ARGS` (the launcher beside this package) once
per worker; docs/protocol.md is the contract (argv, channel messages, signals, exit codes). The
modules, from the bottom up:

- `consts`: exit codes and tunables shared by every module.
- `log`: the worker's log lines, in the master's format.
- `errors`: BootError (the worker cannot become ready) and StopRequested (stopped while booting).
- `channel`: the worker's end of the socket pair to the master.
- `lifecycle`: the signal handler and the process phases (boot, serving, done).
- `appload`: importing the engine and the app, telling ASGI from WSGI.
- `inflight`: requests in flight, the completed count and the stall watchdog.
- `inflightfile`: the requests in flight, in a small file the master reads if the worker dies.
- `drain`: the keep-alive drain of a worker that leaves.
- `accessformat`, `accesslog`: gunicorn's access log, formatted on the loop, written by a thread.
- `engines`: one adapter per HTTP engine (`engines.uvicorn` today) behind one contract.
- `worker`: one worker's life, from hello to exit.
- `zygote`: the warm process that forks workers (spawn = "zygote").
- `main`: the command line.

Only the standard library is imported at module level anywhere in the package: uvicorn (and a2wsgi,
for WSGI apps) are imported once the channel is open, so that their absence is reported to the
master as a `boot_error` of kind `dependency` instead of a traceback. Keep it compatible with Python
3.9 syntax for the same reason (uvicorn itself needs >= 3.10).
"""
