"""The two exceptions that end a worker's boot: BootError (it cannot become ready; reported once as
`boot_error`, then the process exits with the kind's code) and StopRequested (a stop signal arrived
before the event loop ran)."""

class BootError(Exception):
    """The worker cannot become ready: reported once as `boot_error`, then exit with its code."""

    def __init__(self, kind: str, message: str, traceback=None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = " ".join(message.split())  # one line, as the contract requires
        self.traceback = traceback  # the app's traceback, when there is one (multi-line)


class StopRequested(BaseException):
    """Raised from the signal handler while booting (before the event loop runs)."""

    def __init__(self, reason: str, signame: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signame = signame

