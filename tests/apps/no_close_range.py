"""Test wrapper, not an app: `python no_close_range.py PROGRAM ARGS...` execs PROGRAM as an old
kernel would run it: a seccomp filter makes close_range(2) fail with ENOSYS (so herdsman's fork
path takes its close-one-by-one fallback), and PROGRAM inherits, without close-on-exec, a pipe at
fd 1000 above a soft RLIMIT_NOFILE lowered to 512 (the hard limit is kept): a careless parent's fd
that a fallback bounded by the soft limit would let through to the workers.
"""

import ctypes
import os
import resource
import struct
import sys

SYS_CLOSE_RANGE = 436  # the same number on x86_64 and aarch64 (asm-generic)
ENOSYS = 38
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def deny_close_range() -> None:
    def insn(code, jt, jf, k):
        return struct.pack("HBBI", code, jt, jf, k)

    program = b"".join([
        insn(0x20, 0, 0, 0),  # ld [nr]
        insn(0x15, 0, 1, SYS_CLOSE_RANGE),  # jeq close_range
        insn(0x06, 0, 0, 0x00050000 | ENOSYS),  # ret ERRNO(ENOSYS)
        insn(0x06, 0, 0, 0x7FFF0000),  # ret ALLOW
    ])
    buf = ctypes.create_string_buffer(program, len(program))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Fprog(len(program) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def main() -> None:
    read, _write = os.pipe()
    os.dup2(read, 1000, inheritable=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, soft), hard))
    deny_close_range()
    os.execv(sys.argv[1], sys.argv[1:])


main()
