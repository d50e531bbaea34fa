"""Exit codes and tunables of the worker runtime, in one place (docs/protocol.md names the codes)."""

# Exit codes, docs/protocol.md "boot_error kinds" and "Worker exit codes".
EXIT_OK = 0
EXIT_IMPORT = 10
EXIT_DEPENDENCY = 11
EXIT_LIFESPAN = 12
EXIT_INTERFACE = 13
EXIT_READINESS = 14
EXIT_TLS = 15

EXIT_CODES = {
    "import": EXIT_IMPORT,
    "dependency": EXIT_DEPENDENCY,
    "lifespan": EXIT_LIFESPAN,
    "interface": EXIT_INTERFACE,
    "readiness": EXIT_READINESS,
    "tls": EXIT_TLS,
}

# Threads a2wsgi runs WSGI requests in (one pool per worker; a2wsgi.WSGIMiddleware(app, workers=10,
# send_queue_size=10) in 1.10.10). The worker is one process per CPU, so these threads only overlap
# the time requests spend waiting (database, upstream HTTP): the GIL serialises the Python work.
# 10 (a2wsgi's own default) lets a worker wait on 10 slow calls at once; more threads mostly add
# memory and GIL contention, and a request beyond 10 queues inside the worker (counted in_flight).
WSGI_THREADS = 10

# Before the event loop runs, channel writes are blocking with this timeout: the master always
# reads, so a write that cannot complete means it is stopped or gone.
BOOT_SEND_TIMEOUT = 5.0
# Bytes of unsent channel output kept while the master does not read (it is SIGSTOPped, say).
# Beyond this, heartbeats and stall reports are dropped rather than buffered: they are only useful
# when fresh.
CHANNEL_BUFFER_LIMIT = 64 * 1024
# `stalled` reports: the event loop counts as stalled after this many heartbeat intervals without a
# tick; a report lists at most this many requests, and paths are cut to this many characters.
STALL_INTERVALS = 2
STALL_LISTED = 5
PATH_LIMIT = 200
# The messages dropped (not buffered) beyond that limit.
DROPPABLE = ("heartbeat", "stalled")
# After a quick stop (SIGINT, SIGQUIT, master gone), how long lifespan shutdown and interpreter
# teardown (joining a2wsgi threads stuck in a request, atexit hooks) may take before the process
# leaves with os._exit(0). The master's SIGKILL is the last resort behind this.
QUICK_EXIT_BUDGET = 1.0

LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical")
LEVEL_RANK = {name: rank for rank, name in enumerate(LOG_LEVELS)}
