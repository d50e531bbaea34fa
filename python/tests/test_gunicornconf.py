"""gunicorn's Python config file as herdsman reads it (herdsman.runtime.gunicornconf): which names
are settings, which are hooks, where each was assigned, how values travel as JSON, the trimmed
traceback of a file that raises, `python:module` and its import root, and master-side hook runs."""

import json
import os
import sys
import textwrap

import pytest

from herdsman.runtime import gunicornconf


def write(tmp_path, text, name="gunicorn.conf.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_only_gunicorn_settings_and_hooks_are_taken(tmp_path):
    path = write(tmp_path, """\
        import multiprocessing
        bind = "127.0.0.1:8000"
        workers = multiprocessing.cpu_count() * 2 + 1
        helper = "not a setting"
        _private = 1
        def post_fork(server, worker):
            pass
        def on_starting(server):
            pass
        def not_a_hook():
            pass
        """)
    evaluated = gunicornconf.evaluate(path)
    assert set(evaluated["settings"]) == {"bind", "workers"}
    assert evaluated["settings"]["workers"] >= 3
    # Hooks in gunicorn's order, whatever the file's.
    assert evaluated["hooks"] == ["on_starting", "post_fork"]
    assert "import_root" not in evaluated


def test_lines_are_the_last_top_level_assignment(tmp_path):
    path = write(tmp_path, """\
        workers = 2
        timeout = 30
        workers = 4
        keepalive: int = 5
        def when_ready(server):
            pass
        """)
    evaluated = gunicornconf.evaluate(path)
    assert evaluated["settings"]["workers"] == 4
    assert evaluated["lines"] == {"workers": 3, "timeout": 2, "keepalive": 4, "when_ready": 5}


def test_values_are_carried_as_json_or_described(tmp_path):
    path = write(tmp_path, """\
        bind = ["127.0.0.1:1", "unix:/tmp/s"]
        timeout = 30.0
        graceful_timeout = 2.5
        raw_env = ("A=1",)
        accesslog = None
        logconfig_dict = {"version": 1}
        preload_app = True
        """)
    settings = gunicornconf.evaluate(path)["settings"]
    assert settings["bind"] == ["127.0.0.1:1", "unix:/tmp/s"]
    assert settings["timeout"] == 30 and isinstance(settings["timeout"], int)
    assert settings["graceful_timeout"] == {"float": "2.5"}
    assert settings["raw_env"] == ["A=1"]
    assert settings["accesslog"] is None
    assert settings["logconfig_dict"] == {"other": "a dict"}
    assert settings["preload_app"] is True
    json.dumps(settings)  # all of it travels


def test_a_hook_may_be_a_dotted_path_and_must_be_callable(tmp_path):
    path = write(tmp_path, 'post_fork = "os.getpid"\n')
    functions = gunicornconf.hook_functions(gunicornconf.load(path))
    assert functions["post_fork"] is os.getpid
    path = write(tmp_path, "post_fork = 3\n", name="bad.py")
    with pytest.raises(TypeError, match="post_fork must be a function"):
        gunicornconf.hook_functions(gunicornconf.load(path))


def test_the_file_runs_as_gunicorn_runs_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, """\
        import os
        proc_name = __name__ + ":" + os.path.basename(__file__) + ":" + os.getcwd()
        """)
    assert gunicornconf.load("gunicorn.conf.py")["proc_name"] == "__config__:gunicorn.conf.py:%s" % tmp_path
    assert gunicornconf.load(path)["proc_name"].startswith("__config__:")


def test_a_raising_file_shows_its_own_frames_only(tmp_path, capsys):
    path = write(tmp_path, """\
        workers = 2
        def connect():
            raise RuntimeError("no db")
        connect()
        """)
    assert gunicornconf.main(["evaluate", path]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("Traceback (most recent call last):\n  File \"%s\", line 4" % path), err
    assert 'line 3, in connect' in err
    assert err.rstrip().endswith("RuntimeError: no db")
    assert "gunicornconf.py" not in err


def test_a_syntax_error_is_reported_without_runtime_frames(tmp_path, capsys):
    path = write(tmp_path, "workers = (\n")
    assert gunicornconf.main(["evaluate", path]) == 1
    err = capsys.readouterr().err
    assert "SyntaxError" in err and path in err
    assert "gunicornconf.py" not in err


def test_evaluate_prints_one_json_object(tmp_path, capsys):
    path = write(tmp_path, "workers = 3\n")
    assert gunicornconf.main(["evaluate", path]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings"] == {"workers": 3} and printed["lines"] == {"workers": 1}


def test_usage_error(capsys):
    assert gunicornconf.main(["nonsense"]) == 2
    assert "usage:" in capsys.readouterr().err


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package `hm_conf_pkg` under tmp_path/root (on sys.path for the test), cleaned out of
    sys.modules afterwards."""
    root = tmp_path / "root"
    pkg = root / "hm_conf_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "conf.py").write_text("workers = 5\ndef post_fork(server, worker):\n    pass\n")
    (pkg / "broken.py").write_text("workers = 5\nraise ValueError('boom')\n")
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [n for n in sys.modules if n.split(".")[0] == "hm_conf_pkg"]:
        del sys.modules[name]


def test_python_module_reports_its_import_root(package):
    evaluated = gunicornconf.evaluate("python:hm_conf_pkg.conf")
    assert evaluated["settings"] == {"workers": 5}
    assert evaluated["hooks"] == ["post_fork"]
    assert evaluated["lines"]["post_fork"] == 2
    assert evaluated["import_root"] == str(package)


def test_python_module_is_found_through_its_import_root(package, monkeypatch):
    gunicornconf.load("python:hm_conf_pkg.conf")
    del sys.modules["hm_conf_pkg.conf"], sys.modules["hm_conf_pkg"]
    # A worker after chdir: the directory is no longer on its path.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(package)])
    with pytest.raises(ModuleNotFoundError):
        gunicornconf.load("python:hm_conf_pkg.conf")
    settings = gunicornconf.load("python:hm_conf_pkg.conf", str(package))
    assert settings["workers"] == 5
    assert sys.path[-1] == str(package), "kept last, shadowing nothing"


def test_python_module_that_raises_shows_its_own_frames(package, capsys):
    assert gunicornconf.main(["evaluate", "python:hm_conf_pkg.broken"]) == 1
    err = capsys.readouterr().err
    broken = os.path.join(str(package), "hm_conf_pkg", "broken.py")
    assert err.startswith("Traceback (most recent call last):\n  File \"%s\", line 2" % broken), err
    assert "importlib" not in err and "gunicornconf.py" not in err


def test_python_module_not_found_is_one_line(package, capsys):
    assert gunicornconf.main(["evaluate", "python:hm_conf_pkg.missing"]) == 1
    assert capsys.readouterr().err == "ModuleNotFoundError: No module named 'hm_conf_pkg.missing'\n"


def test_cfg_reads_settings_as_attributes():
    cfg = gunicornconf.Config({"workers": 4, "bind": ["127.0.0.1:8000"]})
    assert cfg.workers == 4 and cfg.bind == ["127.0.0.1:8000"]
    assert cfg.statsd_host is None, "a gunicorn setting herdsman does not set"
    with pytest.raises(AttributeError, match="No configuration setting for: nonsense"):
        cfg.nonsense
    cfg.workers = 8
    assert cfg.settings["workers"] == 8


def test_run_hook_calls_it_with_server_and_worker(tmp_path, monkeypatch):
    out = tmp_path / "seen.json"
    path = write(tmp_path, """\
        import json, os
        workers = 2
        def child_exit(server, worker):
            with open(os.environ["SEEN"], "w") as f:
                json.dump({"master": server.pid, "num": server.num_workers, "address": server.address,
                           "pid": worker.pid, "age": worker.age, "exitcode": worker.exitcode,
                           "workers": server.cfg.workers, "timeout": worker.cfg.timeout,
                           "cwd": os.getcwd(), "name": server.proc_name}, f)
        """)
    monkeypatch.setenv("SEEN", str(out))
    chdir = tmp_path / "app"
    chdir.mkdir()
    monkeypatch.chdir(tmp_path)  # run_hook changes directory; monkeypatch restores it
    context = {
        "server": {"pid": 10, "num_workers": 3, "address": ["127.0.0.1:1"]},
        "cfg": {"timeout": 30.0, "workers": 3},
        "worker": {"pid": 42, "age": 7, "exitcode": -9},
        "chdir": str(chdir),
        "pythonpath": [],
    }
    assert gunicornconf.run_hook("child_exit", path, context) == 0
    seen = json.loads(out.read_text())
    assert seen == {"master": 10, "num": 3, "address": ["127.0.0.1:1"], "pid": 42, "age": 7,
                    "exitcode": -9, "workers": 3, "timeout": 30.0, "cwd": str(chdir),
                    "name": "herdsman"}
    # A hook the file does not define is nothing to do.
    assert gunicornconf.run_hook("on_exit", path, context) == 0
