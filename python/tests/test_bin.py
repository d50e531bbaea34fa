"""`python -m herdsman`: finds the installed executable and execs it in the same process, with the
same arguments and its exit code; a clear message when it is not installed."""

import os
import subprocess
import sys
import textwrap

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs herdsman.__main__ with the executable looked up in DIR (argv[1]) only.
RUN_MAIN = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, %r)
    import herdsman._bin as found
    bin_dir = sys.argv.pop(1)
    found.candidate_dirs = lambda: [bin_dir]
    print(os.getpid(), flush=True)
    from herdsman.__main__ import main
    sys.exit(main())
    """
    % PYTHON_DIR
)


def run_main(bin_dir, *args):
    return subprocess.run([sys.executable, "-c", RUN_MAIN, str(bin_dir)] + list(args),
                          capture_output=True, text=True, timeout=30)


def test_execs_the_binary_in_place_with_the_arguments_and_its_exit_code(tmp_path):
    fake = tmp_path / "herdsman"
    fake.write_text('#!/bin/sh\necho "$$ $*"\nexit 7\n')
    fake.chmod(0o755)
    out = run_main(tmp_path, "check", "-w", "2", "app:app")
    assert out.returncode == 7, out
    python_pid, binary_line = out.stdout.splitlines()
    assert binary_line == "%s check -w 2 app:app" % python_pid


def test_a_missing_binary_is_a_clear_error(tmp_path):
    out = run_main(tmp_path / "nowhere")
    assert out.returncode == 1
    assert "the herdsman executable is not installed" in out.stderr
    assert str(tmp_path / "nowhere") in out.stderr
    assert "pip install --force-reinstall herdsman" in out.stderr
