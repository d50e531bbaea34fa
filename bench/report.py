"""Turns the raw results of bench/run.py into benchmarks.md, benchmarks.json and the PNG plots.

Every comparison is a ratio against gunicorn (+ UvicornWorker for ASGI apps) measured in the same
run. Works on partial results (a smoke run, a subset of servers or phases): what is missing is
shown as "–".
"""

import json
import statistics
from pathlib import Path

ORDER = ["herdsman", "herdsman-accesslog", "herdsman-native", "herdsman-native-accesslog", "herdsman-zygote", "gunicorn",
         "gunicorn-accesslog", "uvicorn", "granian", "hypercorn"]
COLORS = {"herdsman": "#d62728", "herdsman-zygote": "#ff9896", "gunicorn": "#1f77b4", "uvicorn": "#2ca02c", "granian": "#9467bd",
          "hypercorn": "#8c564b", "herdsman-accesslog": "#e377c2", "gunicorn-accesslog": "#17becf",
          "herdsman-native": "#ff7f0e", "herdsman-native-accesslog": "#ffbb78"}
ACCESSLOG = {"herdsman-accesslog": "herdsman", "herdsman-native-accesslog": "herdsman-native",
             "gunicorn-accesslog": "gunicorn"}
NATIVE = "herdsman-native"
# issue 15: the native engine at least granian's req/s with a p99 no worse, raw WSGI and Flask JSON;
# the aim on raw WSGI is 1.5x.
NATIVE_MIN_VS_GRANIAN = 1.0
NATIVE_AIM_VS_GRANIAN = 1.5
ACCESSLOG_MIN_VS_OFF = 0.95  # issue 12: herdsman with its access log on >= 0.95x itself with it off
ACCESSLOG_MIN_VS_GUNICORN = 1.5  # ... and >= 1.5x gunicorn with --access-logfile
KINDS = ["reload", "recycle", "upgrade", "scale"]
KIND_TITLES = {"control": "no event (control)", "reload": "reload", "recycle": "max-requests recycling",
               "upgrade": "binary upgrade", "scale": "scale-down and up"}
MODES = ["keepalive", "fresh"]
REF = "gunicorn"
MASTER_RSS_TARGET_KIB = 5 * 1024
IDLE_CPU_NEAR_ZERO_MS_PER_MIN = 60.0  # 0.1 % of one core
REPLACEMENT_MARGIN_MS = 50.0

APP_TITLES = {"asgi": "plain ASGI", "fastapi": "FastAPI JSON", "wsgi": "plain WSGI", "flask": "Flask JSON"}
ASGI_APPS = ("asgi", "fastapi")


def dash(v, fmt="{:.0f}"):
    return "–" if v is None else fmt.format(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def rfmt(r):
    return "–" if r is None else f"{r:.2f}×"


def ordered(d):
    return [k for k in ORDER if k in d]


def label(server, app_kind="asgi"):
    if server == "herdsman-accesslog":
        return "herdsman, access log on (its default)"
    if server == "herdsman-native-accesslog":
        return "herdsman --engine native, access log on (its default)"
    if server == "gunicorn-accesslog":
        return label("gunicorn", app_kind) + " --access-logfile -"
    return {"herdsman": "herdsman", "herdsman-native": "herdsman --engine native", "herdsman-zygote": "herdsman --spawn zygote --preload", "gunicorn": "gunicorn + UvicornWorker" if app_kind == "asgi" else "gunicorn gthread",
            "uvicorn": "uvicorn --workers", "granian": "granian", "hypercorn": "hypercorn"}[server]


def short_error(err):
    """An error for a table cell: 'the server exited ... (exit code N)' without the log tail."""
    err = str(err or "")
    if "(exit code" in err and "):" in err:
        return err.split("):")[0] + ")"
    return err[:140]


def workers(n):
    return f"{n} worker" + ("" if str(n) == "1" else "s")


def mib(kib):
    return None if kib is None else kib / 1024


# --------------------------------------------------------------------------------------------
# Plots

def plot_throughput(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tp = results["phases"].get("throughput") or {}
    apps = [a for a in ("asgi", "fastapi", "wsgi", "flask") if a in tp]
    if not apps:
        return False
    # The access-log rows are in the tables (and their own section), not in the plot.
    servers = [s for s in ORDER if s not in ACCESSLOG and any(s in tp[a] for a in apps)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    width = 0.8 / max(1, len(servers))
    for i, srv in enumerate(servers):
        xs = [j + (i - (len(servers) - 1) / 2) * width for j in range(len(apps))]
        rps = [tp[a].get(srv, {}).get("rps") or 0 for a in apps]
        p99 = [tp[a].get(srv, {}).get("p99_ms") or 0 for a in apps]
        name = label(srv)
        if srv == "gunicorn":
            name = "gunicorn (+UvicornWorker; gthread for WSGI)"
        axes[0].bar(xs, rps, width, label=name, color=COLORS[srv])
        axes[1].bar(xs, p99, width, label=name, color=COLORS[srv])
    for ax, title in ((axes[0], "throughput (req/s, higher is better)"), (axes[1], "p99 latency (ms, lower is better)")):
        ax.set_xticks(range(len(apps)))
        ax.set_xticklabels([APP_TITLES[a] for a in apps])
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(servers), fontsize=8, frameon=False)
    cfg = results["config"]
    lg = results["loadgen"]
    fig.suptitle(f"{workers(cfg['workers'])}, {lg['tool']} with {lg['connections']} connections sharing the "
                 f"{results['machine']['nproc']} CPUs; {results['date']}", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_replacement(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    life = results["phases"].get("lifecycle") or {}
    servers = ordered(life)
    if not servers:
        return False
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(servers) + 1.8))
    ys = list(range(len(servers)))[::-1]
    xmax = 0
    for y, srv in zip(ys, servers):
        rep = life[srv].get("replacement") or {}
        total = rep.get("median_ms")
        spawn = rep.get("new_process_median_ms")
        if total is None:
            err = rep.get("error") or ""
            why = "the server exited" if "exited" in err else "no new worker within 15 s" if "no new worker" in err else err[:40]
            ax.text(1, y, f" not replaced: {why}", va="center", fontsize=8)
            continue
        xmax = max(xmax, total)
        if spawn is not None and spawn <= total:
            ax.barh(y, spawn, color="#bbbbbb", label="until the new process exists" if y == ys[0] or srv == servers[0] else None)
            ax.barh(y, total - spawn, left=spawn, color=COLORS[srv])
        else:
            ax.barh(y, total, color=COLORS[srv])
        ax.text(total, y, f" {total:.0f} ms", va="center", fontsize=8)
    imp = results["phases"].get("imports") or {}
    if imp.get("python_import_app_ms"):
        base = imp["python_import_app_ms"]
        ax.axvline(base, color="k", ls=":", lw=1)
        ax.axvline(base + REPLACEMENT_MARGIN_MS, color="k", ls="--", lw=1)
        tr = ax.get_xaxis_transform()
        ax.text(base, 0.99, " python + import app", fontsize=7, va="top", transform=tr)
        ax.text(base + REPLACEMENT_MARGIN_MS, 0.01, " target: + 50 ms", fontsize=7, va="bottom", transform=tr)
        xmax = max(xmax, base + REPLACEMENT_MARGIN_MS)
    ax.set_yticks(ys)
    ax.set_yticklabels([life[s].get("label", s) for s in servers])
    ax.set_xlim(0, xmax * 1.35 + 1)
    ax.set_xlabel("ms from SIGKILL of a worker to the first answer of its replacement (median)")
    ax.set_title(f"worker replacement, {APP_TITLES.get(results['config']['lifecycle_app'])} app, "
                 f"{results['config']['workers']} workers (grey: until the new process exists)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_memory(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mem = results["phases"].get("memory") or {}
    servers = ordered(mem)
    if not servers:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for srv in servers:
        by = mem[srv].get("by_workers", {})
        ns = sorted(int(n) for n, r in by.items() if "master_rss_kib" in r and not r.get("note"))
        if not ns:
            continue
        axes[0].plot(ns, [by[str(n)]["master_rss_kib"] / 1024 for n in ns], "o-", color=COLORS[srv], label=label(srv))
        axes[1].plot(ns, [by[str(n)]["total_pss_kib"] / 1024 for n in ns], "o-", color=COLORS[srv], label=label(srv))
    axes[0].axhline(5, color="k", ls="--", lw=1)
    axes[0].set_title("master RSS (MiB, idle; dashed: 5 MiB)")
    axes[1].set_title("total PSS of master + workers (MiB, idle)")
    counts = sorted({int(n) for srv in servers for n in mem[srv].get("by_workers", {})})
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts)
        ax.set_xticklabels([str(c) for c in counts])
        ax.minorticks_off()
        ax.set_xlabel("workers")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{APP_TITLES.get(results['config']['lifecycle_app'])} app; {results['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------
# Targets

def noise(results):
    """Tolerance of a ratio from the spread of the slots: each figure is the median of k slots
    whose coefficient of variation is cv, so its standard error is about 1.25 cv / sqrt(k), and a
    ratio of two such figures about sqrt(2) times that; two standard errors, at least 3 %."""
    tp = results["phases"].get("throughput") or {}
    out = []
    for key in ("rps", "p99_ms"):
        vals = []
        for per in tp.values():
            for e in per.values():
                k = len([r for r in e.get("slots", []) if r.get("rps")])
                if e.get(key + "_cv") is not None and k > 1:
                    vals.append(2 * 2 ** 0.5 * 1.2533 * e[key + "_cv"] / k ** 0.5)
        out.append(max(0.03, statistics.median(vals)) if vals else None)
    return tuple(out)


def median_run(rep):
    """The kill whose replacement time is the median one (its parts belong together)."""
    runs = sorted((r for r in rep.get("runs", []) if "replacement_ms" in r), key=lambda r: r["replacement_ms"])
    return runs[(len(runs) - 1) // 2] if runs else None


def replacement_profile(r):
    """Where the time of one herdsman replacement went."""
    boot = (r.get("herdsman_boot_ms") or [None])[0]
    runtime = (r.get("worker_runtime_ms") or [None])[0]
    spawn = r.get("new_process_ms")
    parts = [f"Profile of that kill: the new process existed {dash(spawn)} ms after the SIGKILL"]
    if boot is not None:
        parts.append(f"herdsman logged it ready {boot:.0f} ms after its fork (`worker ready ... boot=`)")
        if runtime is not None:
            parts.append(f"of which {runtime:.0f} ms from the first line of the worker runtime to ready "
                         f"(its own log, 10 ms steps: importing uvicorn and the app, lifespan startup) and "
                         f"{boot - runtime:.0f} ms exec and interpreter start before it")
        if spawn is not None:
            rest = r["replacement_ms"] - spawn - boot
            parts.append(f"then {rest:.0f} ms to the first answer" if rest >= 3 else
                         "and the first answer came within a few ms of ready (the parts come from different clocks)")
    return "; ".join(parts) + "."


def idle_profile(entry):
    """What an idle master does, from strace -c: syscalls per wakeup and the busiest ones."""
    st = entry.get("strace") or {}
    wk = entry.get("master_wakeups_per_s")
    if not st or not wk:
        return ""
    per = st["syscalls_per_s"] / wk
    top = ", ".join(f"{k} {v:.0f}/s" + (f" ({st['failed_per_s'][k]:.0f} failing)" if st.get("failed_per_s", {}).get(k) else "")
                    for k, v in list(st["by_syscall_per_s"].items())[:4])
    return f"{wk:.1f} wakeups/s, {st['syscalls_per_s']:.0f} syscalls/s ({per:.1f} per wakeup: {top})"


def targets(results):
    """[(target, verdict, detail)] for herdsman. verdict: met, missed, not measured."""
    ph = results["phases"]
    out = []
    tp = ph.get("throughput") or {}
    n_rps, n_p99 = noise(results)
    tol_rps = n_rps if n_rps is not None else 0.05
    tol_p99 = n_p99 if n_p99 is not None else 0.10
    checks, soft = [], set()
    for app, per in tp.items():
        h = per.get("herdsman", {})
        peers = ["gunicorn", "uvicorn"] if app in ASGI_APPS else ["uvicorn"]
        for peer in peers:
            p = per.get(peer, {})
            r_rps, r_p99 = ratio(h.get("rps"), p.get("rps")), ratio(h.get("p99_ms"), p.get("p99_ms"))
            if r_rps is None or r_p99 is None:
                continue
            ok = r_rps >= 1 - tol_rps and r_p99 <= 1 + tol_p99
            text = (f"{APP_TITLES[app]} vs {label(peer, 'asgi' if app in ASGI_APPS else 'wsgi')}: "
                    f"throughput {rfmt(r_rps)}, p99 {rfmt(r_p99)}")
            if r_rps < 1 or r_p99 > 1:
                soft.add(text)
            checks.append((ok, text))
    if checks:
        missed = [c for ok, c in checks if not ok]
        verdict = "met" if not missed else "missed"
        below = [c for ok, c in checks if ok and c in soft]
        above = [c for ok, c in checks if ok and c not in soft]
        parts = []
        if missed:
            parts.append("outside the noise: " + "; ".join(missed))
        if below:
            parts.append("worse than 1.0 but within the noise: " + "; ".join(below))
        if above:
            parts.append("at least 1.0: " + "; ".join(above))
        detail = ". ".join(p[0].upper() + p[1:] for p in parts)
        detail += (f" (noise: throughput ±{tol_rps:.0%}, p99 ±{tol_p99:.0%}: two standard errors, from the spread "
                   "between the slots)")
        out.append(("Throughput and p99 at least those of gunicorn + UvicornWorker and uvicorn --workers "
                    "(ASGI apps; WSGI apps against uvicorn --workers, which serves WSGI through the same kind of "
                    "thread bridge)", verdict, detail))
    else:
        out.append(("Throughput and p99 at least those of gunicorn + UvicornWorker and uvicorn --workers",
                    "not measured", ""))

    out.append(native_target(results, tol_rps, tol_p99))
    out.append(native_target(results, tol_rps, tol_p99, apps=("asgi", "fastapi")))
    out.append(websocket_target(results, tol_rps))
    out.append(http2_target(results, tol_rps))
    life = ph.get("lifecycle") or {}
    h = life.get("herdsman") or {}
    out.append(replacement_target(results))
    out.extend(accesslog_targets(results))

    rep = h.get("replacement") or {}
    med = median_run(rep)
    if med is not None and med.get("python_import_app_ms") is not None:
        runs = [r for r in rep.get("runs", []) if "replacement_ms" in r and r.get("python_import_app_ms")]
        over = statistics.median(r["replacement_ms"] - r["python_import_app_ms"] for r in runs)
        ok = over <= REPLACEMENT_MARGIN_MS
        detail = (f"median over {len(runs)} kills of (replacement − python + import app, timed just before each "
                  f"kill): {over:+.0f} ms, against + {REPLACEMENT_MARGIN_MS:.0f} ms. Median kill: "
                  f"{med['replacement_ms']:.0f} ms against a floor of {med['python_import_app_ms']:.0f} ms. "
                  + replacement_profile(med))
        out.append(("Replacement after SIGKILL no slower than python start + app import + 50 ms",
                    "met" if ok else "missed", detail))
    else:
        out.append(("Replacement after SIGKILL no slower than python start + app import + 50 ms", "not measured",
                    str(rep.get("error") or "")))

    mem = (ph.get("memory") or {}).get("herdsman", {}).get("by_workers", {})
    rss = {int(n): r["master_rss_kib"] for n, r in mem.items() if "master_rss_kib" in r}
    if rss:
        worst = max(rss.values())
        ok = worst < MASTER_RSS_TARGET_KIB
        detail = ", ".join(f"{workers(n)}: {v / 1024:.2f} MiB" for n, v in sorted(rss.items()))
        out.append(("Master RSS under 5 MiB at every worker count", "met" if ok else "missed", detail))
    else:
        out.append(("Master RSS under 5 MiB at every worker count", "not measured", ""))

    idle = (ph.get("idle") or {}).get("herdsman", {}) if isinstance(ph.get("idle"), dict) else {}
    cpu = {int(n): r["master_cpu_ms_per_min"] for n, r in idle.items() if isinstance(r, dict) and "master_cpu_ms_per_min" in r}
    if cpu:
        ok = max(cpu.values()) < IDLE_CPU_NEAR_ZERO_MS_PER_MIN
        detail = ", ".join(f"{workers(n)}: {v:.1f} ms of CPU per idle minute" for n, v in sorted(cpu.items()))
        detail += f" (near zero: under {IDLE_CPU_NEAR_ZERO_MS_PER_MIN:.0f} ms per minute, 0.1 % of one core)"
        if len(cpu) > 1:
            lo, hi = min(cpu), max(cpu)
            grow = cpu[hi] / cpu[lo] if cpu[lo] else None
            detail += (f"; from {workers(lo)} to {workers(hi)} it grows {dash(grow, '{:.1f}')}× for {hi / lo:.0f}× the "
                       f"workers, so it is not independent of the worker count")
            ok = ok and (grow is None or grow < 2)
        profs = [f"{workers(n)}: {idle_profile(idle[n])}" for n in sorted(idle, key=int)
                 if isinstance(idle[n], dict) and idle_profile(idle[n])]
        if profs:
            detail += ". Profile (strace -c): " + "; ".join(profs)
        out.append(("Master idle CPU near zero, whatever the worker count", "met" if ok else "missed", detail))
    else:
        out.append(("Master idle CPU near zero, whatever the worker count", "not measured", ""))
    return out


def native_target(results, tol_rps, tol_p99, apps=("wsgi", "flask")):
    """issues 15 and 16: the native engine against granian, same run: plain WSGI and Flask JSON, then
    plain ASGI and FastAPI JSON; the aim is 1.5x on the plain app."""
    plain = apps[0]
    name = (f"`--engine native` at least {NATIVE_MIN_VS_GRANIAN:.1f}× granian's req/s with a p99 no worse, "
            f"{APP_TITLES[apps[0]]} and {APP_TITLES[apps[1]]} (aim: {NATIVE_AIM_VS_GRANIAN:.1f}× on "
            f"{APP_TITLES[plain]})")
    tp = results["phases"].get("throughput") or {}
    parts, ok, measured = [], True, False
    for app in apps:
        per = tp.get(app) or {}
        n, g = per.get(NATIVE, {}), per.get("granian", {})
        r_rps, r_p99 = ratio(n.get("rps"), g.get("rps")), ratio(n.get("p99_ms"), g.get("p99_ms"))
        if r_rps is None or r_p99 is None:
            if app in tp:
                why = n.get("error") or g.get("error") or ("granian is not in this run" if not g else
                                                             "the native engine is not in this run")
                parts.append(f"{APP_TITLES[app]}: not measured ({short_error(why)})")
                ok = False
            continue
        measured = True
        good = r_rps >= NATIVE_MIN_VS_GRANIAN - tol_rps and r_p99 <= 1 + tol_p99
        ok = ok and good
        text = (f"{APP_TITLES[app]}: {n['rps']:.0f} ÷ {g['rps']:.0f} req/s = {rfmt(r_rps)}, p99 {n['p99_ms']:.2f} ÷ "
                f"{g['p99_ms']:.2f} ms = {rfmt(r_p99)}")
        cpu_n, cpu_g = n.get("server_cpu_us_per_request"), g.get("server_cpu_us_per_request")
        if cpu_n and cpu_g:
            text += f", server CPU {cpu_n:.1f} vs {cpu_g:.1f} µs/request"
        if app == plain:
            text += (f" ({'at' if r_rps >= NATIVE_AIM_VS_GRANIAN else 'short of'} the {NATIVE_AIM_VS_GRANIAN:.1f}× aim)")
        parts.append(text)
    if not measured:
        return (name, "not measured", "; ".join(parts))
    detail = "; ".join(parts) + f" (noise: throughput ±{tol_rps:.0%}, p99 ±{tol_p99:.0%})"
    return (name, "met" if ok else "missed", detail)


def kind_cell(k):
    """A kind's events as words: '6 reloads', '8 recyclings'."""
    words = {"reload": ("reload", "reloads"), "recycle": ("recycling", "recyclings"),
             "upgrade": ("upgrade", "upgrades"), "scale": ("scale-down and up", "scale-downs and ups")}
    return lambda n: f"{n} {words[k][0] if n == 1 else words[k][1]}"


def repl_summary(entry, mode):
    """Over every replacement event of one server (one app, one mode): (failed, sent, events text,
    all asked events done)."""
    ev = (entry.get("modes") or {}).get(mode) or {}
    failed = sent = 0
    parts, complete = [], True
    for k in KINDS:
        r = ev.get(k)
        if not r:
            continue
        if "failed" not in r:
            complete = False
            parts.append(f"{KIND_TITLES[k]}: {short_error(r.get('error'))}")
            continue
        failed += r["failed"]
        sent += r["failed"] + r["ok"]
        parts.append(kind_cell(k)(r.get("events", 0)))
        if r.get("notes") or (r.get("asked") is not None and r.get("events", 0) < 1) or \
                (k == "recycle" and not r.get("events")):
            complete = False
    return failed, sent, ", ".join(parts), complete


def replacement_target(results):
    name = ("0 failed requests in every replacement under full load (reloads, max-requests recycling, upgrades, "
            "scale-down), with keep-alive and with fresh connections, and at a graceful stop")
    ph = results["phases"]
    life = ph.get("lifecycle") or {}
    gs = (life.get("herdsman") or {}).get("graceful_stop") or {}
    repl = ph.get("replacements") or {}
    if not any(srv in per for per in repl.values() for srv in ("herdsman", "herdsman-zygote")):
        rl = (life.get("herdsman") or {}).get("reloads") or {}
        if "failed" in rl:  # a run from before the replacements phase
            return (name, "not measured",
                    f"This run measured reloads with fresh connections only: {rl['failed']} failed of "
                    f"{rl['ok'] + rl['failed']} requests over {rl.get('reloads_done')} reloads, "
                    f"{dash(gs.get('failed'))} slow requests at the graceful stop; keep-alive clients, recycling, "
                    "upgrades and scale-down were not measured.")
        return (name, "not measured", "")
    ok, parts, peers = True, [], []
    for app, per in repl.items():
        for srv in ordered(per):
            e = per[srv]
            if "modes" not in e:
                if srv.startswith("herdsman"):
                    ok = False
                    parts.append(f"{label(srv)} ({APP_TITLES[app]}): {short_error(e.get('error'))}")
                continue
            cells = []
            for mode in MODES:
                failed, sent, what, complete = repl_summary(e, mode)
                word = "keep-alive" if mode == "keepalive" else "fresh"
                cells.append(f"{word} {failed} of {sent}" + (f" ({what})" if srv.startswith("herdsman") else ""))
                if srv.startswith("herdsman") and (failed or not complete):
                    ok = False
            text = f"{e.get('label', label(srv))}, {APP_TITLES[app]}: " + "; ".join(cells)
            (parts if srv.startswith("herdsman") else peers).append(text)
    if "failed" in gs:
        parts.append(f"graceful stop: {gs['failed']} of {gs['in_flight']} slow requests failed")
        ok = ok and gs["failed"] == 0
    else:
        ok = False
    detail = "Failed of sent requests. " + ". ".join(parts)
    if peers:
        detail += ". Peers, over the events each supports (see the replacement tables): " + "; ".join(peers)
    return (name, "met" if ok else "missed", detail)


def accesslog_rows(results, engine="herdsman"):
    """[(app, herdsman off, herdsman on, gunicorn off, gunicorn on)] entries of the throughput phase,
    for herdsman with its default engine (`engine` "herdsman") or the native one ("herdsman-native")."""
    tp = results["phases"].get("throughput") or {}
    rows = []
    on_name = engine + "-accesslog"
    for app in ("asgi", "fastapi", "wsgi", "flask"):
        per = tp.get(app) or {}
        if on_name in per or (engine == "herdsman" and "gunicorn-accesslog" in per):
            rows.append((app, per.get(engine, {}), per.get(on_name, {}), per.get("gunicorn", {}),
                         per.get("gunicorn-accesslog", {})))
    return rows


def log_written(e):
    """Was the access log of this row really on (its lines are in the server's log)?"""
    return (e.get("access_log") or {}).get("access_lines", 0) > 0


def accesslog_targets(results):
    rows = accesslog_rows(results)
    t1 = (f"herdsman with its access log on (the default) at least {ACCESSLOG_MIN_VS_OFF:.2f}× its throughput with it "
          "off (plain ASGI and plain WSGI)")
    t2 = (f"herdsman with its access log on at least {ACCESSLOG_MIN_VS_GUNICORN:.1f}× gunicorn with "
          "`--access-logfile -` (plain ASGI and plain WSGI)")
    if not rows:
        return [(t1, "not measured", ""), (t2, "not measured", "")]
    n_rps, _ = noise(results)
    out = []
    for title, peer_of, floor in ((t1, lambda r: r[1], ACCESSLOG_MIN_VS_OFF),
                                  (t2, lambda r: r[4], ACCESSLOG_MIN_VS_GUNICORN)):
        ok, parts, measured = True, [], False
        for r in rows:
            app, on, peer = r[0], r[2], peer_of(r)
            q = ratio(on.get("rps"), peer.get("rps"))
            if q is None:
                parts.append(f"{APP_TITLES[app]}: not measured")
                ok = False
                continue
            if not log_written(on) or (peer is r[4] and not log_written(peer)):
                parts.append(f"{APP_TITLES[app]}: {rfmt(q)}, but an access log that should be on wrote no line")
                ok = False
                continue
            measured = True
            parts.append(f"{APP_TITLES[app]}: {on['rps']:.0f} ÷ {peer['rps']:.0f} req/s = {rfmt(q)}")
            ok = ok and q >= floor
        detail = "; ".join(parts)
        if n_rps is not None:
            detail += f" (noise of a throughput ratio in this run: ±{n_rps:.0%})"
        out.append((title, ("met" if ok else "missed") if measured else "not measured", detail))
    return out


# --------------------------------------------------------------------------------------------
# Markdown

def headline(results):
    ph = results["phases"]
    tp = ph.get("throughput") or {}
    life = ph.get("lifecycle") or {}
    boot = ph.get("boot") or {}
    mem = ph.get("memory") or {}
    idle = ph.get("idle") if isinstance(ph.get("idle"), dict) else {}
    n = results["config"]["workers"]
    rows = []

    def row(name, getter, fmt, better):
        h = getter("herdsman")
        g = getter("gunicorn")
        u = getter("uvicorn")
        if h is None and g is None and u is None:
            return
        rows.append(f"| {name} | {dash(h, fmt)} | {dash(g, fmt)} | {rfmt(ratio(h, g))} | {dash(u, fmt)} | "
                    f"{rfmt(ratio(h, u))} | {better} |")

    for app in ("asgi", "fastapi", "wsgi", "flask"):
        if app in tp:
            row(f"{APP_TITLES[app]}: req/s", lambda s, a=app: tp[a].get(s, {}).get("rps"), "{:.0f}", "higher")
    for app, _, on, _, gon in accesslog_rows(results):
        if on.get("rps") is not None or gon.get("rps") is not None:
            rows.append(f"| {APP_TITLES[app]}, access log on²: req/s | {dash(on.get('rps'))} | {dash(gon.get('rps'))} | "
                        f"{rfmt(ratio(on.get('rps'), gon.get('rps')))} | | | higher |")
    for app in ("asgi", "fastapi", "wsgi", "flask"):
        if app in tp:
            row(f"{APP_TITLES[app]}: p99 ms", lambda s, a=app: tp[a].get(s, {}).get("p99_ms"), "{:.2f}", "lower")
    # The native engine in herdsman's column; granian is in the targets.
    for app in ("asgi", "fastapi", "wsgi", "flask"):
        if NATIVE in (tp.get(app) or {}):
            for key, what, fmt, better in (("rps", "req/s", "{:.0f}", "higher"), ("p99_ms", "p99 ms", "{:.2f}", "lower")):
                row(f"{APP_TITLES[app]}, `--engine native`: {what}",
                    lambda s, a=app, k=key: tp[a].get(NATIVE if s == "herdsman" else s, {}).get(k), fmt, better)
    row("cold boot to first response, ms", lambda s: boot.get(s, {}).get("first_response_ms"), "{:.0f}", "lower")
    row("replacement after SIGKILL, ms", lambda s: (life.get(s, {}).get("replacement") or {}).get("median_ms"),
        "{:.0f}", "lower")

    def failed(s, key):
        v = (life.get(s, {}).get(key) or {})
        return v.get("failed")

    for key, name in (("kill_under_load", "failed requests, SIGKILL of a worker under load"),
                      ("reloads", "failed requests over the reloads (fresh connections)"),
                      ("graceful_stop", "failed slow requests at a graceful stop")):
        vals = {s: failed(s, key) for s in ("herdsman", "gunicorn", "uvicorn")}
        if any(v is not None for v in vals.values()):
            rows.append(f"| {name} | {dash(vals['herdsman'])} | {dash(vals['gunicorn'])} | | "
                        f"{dash(vals['uvicorn'])} | | 0 |")
    repl = ph.get("replacements") or {}
    for app, per in repl.items():
        for kind in ("reload", "recycle", "upgrade", "scale"):
            cells = {}
            for srv in ("herdsman", "gunicorn", "uvicorn"):
                modes = (per.get(srv) or {}).get("modes")
                if not modes:
                    continue
                rs = [(modes.get(m) or {}).get(kind) for m in MODES]
                if all(r and "failed" in r for r in rs):
                    events = [str(r.get("events", 0)) for r in rs]
                    cells[srv] = (f"{rs[0]['failed']} / {rs[1]['failed']} in "
                                  + (events[0] if len(set(events)) == 1 else " / ".join(events)))
                else:
                    cells[srv] = "–" if any(rs) else "not supported"
            if any(c[0].isdigit() for c in cells.values()):
                rows.append(f"| failed requests in {KIND_TITLES[kind]} events, keep-alive / fresh connections "
                            f"({APP_TITLES[app]})³ | {cells.get('herdsman', '–')} | {cells.get('gunicorn', '–')} | | "
                            f"{cells.get('uvicorn', '–')} | | 0 |")
    ns = str(n) if any(str(n) in mem.get(s, {}).get("by_workers", {}) for s in mem) else None
    if ns is None and mem:
        ns = sorted({k for s in mem for k in mem[s].get("by_workers", {})}, key=int)[0]
    if ns:
        row(f"master RSS, MiB ({workers(ns)})", lambda s: mib(mem.get(s, {}).get("by_workers", {}).get(ns, {}).get("master_rss_kib")),
            "{:.1f}", "lower")
        row(f"total PSS, MiB ({workers(ns)})", lambda s: mib(mem.get(s, {}).get("by_workers", {}).get(ns, {}).get("total_pss_kib")),
            "{:.1f}", "lower")
    allns = sorted({k for s in mem for k in mem[s].get("by_workers", {})}, key=int)
    if allns and allns[-1] != ns:
        big = allns[-1]
        row(f"master RSS, MiB ({workers(big)})",
            lambda s: mib(mem.get(s, {}).get("by_workers", {}).get(big, {}).get("master_rss_kib")), "{:.1f}", "lower")
        row(f"total PSS, MiB ({workers(big)})",
            lambda s: mib(mem.get(s, {}).get("by_workers", {}).get(big, {}).get("total_pss_kib")), "{:.1f}", "lower")
    counts = sorted({k for s in idle for k in idle[s] if isinstance(idle[s], dict)}, key=int) if idle else []
    for c in counts:
        row(f"master CPU per idle minute, ms ({workers(c)})",
            lambda s, c=c: (idle.get(s, {}).get(c) or {}).get("master_cpu_ms_per_min"), "{:.1f}", "lower")
    z = life.get("herdsman-zygote") or {}
    zrep = (z.get("replacement") or {}).get("median_ms")
    gref = (life.get("gunicorn", {}).get("replacement") or {}).get("median_ms")
    if zrep is not None:
        zmem = (mem.get("herdsman-zygote") or {}).get("by_workers", {})
        big = max(zmem, key=int, default=None)
        zp = (zmem.get(big) or {}).get("total_pss_kib") if big else None
        gp = ((mem.get("gunicorn") or {}).get("by_workers", {}).get(big) or {}).get("total_pss_kib") if big else None
        rows.append(f"| with `--spawn zygote --preload`: replacement after SIGKILL, ms | {zrep:.0f} | "
                    f"{dash(gref)} | {rfmt(ratio(zrep, gref))} | | | lower |")
        if zp is not None:
            rows.append(f"| with `--spawn zygote --preload`: total PSS, MiB ({workers(big)}) | {zp / 1024:.1f} | "
                        f"{dash(mib(gp), '{:.1f}')} | {rfmt(ratio(zp, gp))} | | | lower |")
    head = ["| | herdsman | gunicorn + UvicornWorker¹ | herdsman ÷ gunicorn | uvicorn --workers | "
            "herdsman ÷ uvicorn | better |", "|---|---:|---:|---:|---:|---:|---|"]
    return "\n".join(head + rows)


def websocket_target(results, tol):
    """issue 16: WebSocket echo messages/s with the native engine at least uvicorn's, same run."""
    name = "`--engine native` WebSocket echo messages/s at least `uvicorn --workers`'"
    ws = results["phases"].get("websocket") or {}
    n, u = ws.get(NATIVE, {}), ws.get("uvicorn", {})
    r = ratio(n.get("mps"), u.get("mps"))
    if r is None:
        why = n.get("error") or u.get("error") or ("not in this run" if not ws else "a server is missing")
        return (name, "not measured", short_error(why))
    detail = (f"{n['mps']:.0f} ÷ {u['mps']:.0f} messages/s = {rfmt(r)}, p99 {dash(n.get('p99_ms'), '{:.2f}')} vs "
              f"{dash(u.get('p99_ms'), '{:.2f}')} ms (noise: ±{tol:.0%})")
    return (name, "met" if r >= 1 - tol else "missed", detail)


def http2_target(results, tol):
    """issue 16: HTTP/2 req/s with the native engine at least granian's and hypercorn's, same run."""
    name = "`--engine native` HTTP/2 (h2c) req/s at least granian's and hypercorn's"
    h2 = results["phases"].get("http2") or {}
    if not h2 or "error" in h2:
        return (name, "not measured", short_error(h2.get("error") if h2 else "not in this run"))
    parts, ok, measured = [], True, False
    for app, per in h2.items():
        n = per.get(NATIVE, {})
        for peer in ("granian", "hypercorn"):
            p = per.get(peer, {})
            r = ratio(n.get("rps"), p.get("rps"))
            if r is None:
                parts.append(f"{APP_TITLES.get(app, app)} vs {peer}: not measured "
                             f"({short_error(n.get('error') or p.get('error') or 'missing')})")
                continue
            measured = True
            ok = ok and r >= 1 - tol
            parts.append(f"{APP_TITLES.get(app, app)}: {n['rps']:.0f} ÷ {p['rps']:.0f} req/s ({peer}) = {rfmt(r)}")
    if not measured:
        return (name, "not measured", "; ".join(parts))
    return (name, "met" if ok else "missed", "; ".join(parts) + f" (noise: ±{tol:.0%})")


def md_websocket(results):
    ws = results["phases"].get("websocket") or {}
    if not ws:
        return ""
    ref = ws.get("uvicorn", {})
    lines = ["| server | messages/s | ÷ uvicorn | p50 ms | p99 ms | server CPU µs/message | slots: messages/s (min–max) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for srv in ordered(ws):
        e = ws[srv]
        if e.get("mps") is None:
            lines.append(f"| {e.get('label', srv)} | failed: {short_error(e.get('error'))} | | | | | |")
            continue
        good = [r for r in e.get("slots", []) if r.get("mps")]
        spread = f"{len(good)}: {min(r['mps'] for r in good):.0f}–{max(r['mps'] for r in good):.0f}" if good else ""
        lines.append(f"| {e['label']} | {e['mps']:.0f} | {rfmt(ratio(e['mps'], ref.get('mps')))} | "
                     f"{dash(e.get('p50_ms'), '{:.2f}')} | {dash(e.get('p99_ms'), '{:.2f}')} | "
                     f"{dash(e.get('server_cpu_us_per_message'), '{:.1f}')} | {spread} |")
    return "\n".join(lines)


def md_throughput(results):
    tp = results["phases"].get("throughput") or {}
    parts = []
    for app in ("asgi", "fastapi", "wsgi", "flask"):
        if app not in tp:
            continue
        per = tp[app]
        ref = per.get(REF, {})
        lines = [f"**{APP_TITLES[app]}** (`tests/apps/{app}_app.py`, `GET "
                 f"{'/items/7' if app in ('fastapi', 'flask') else '/'}`)", "",
                 "| server | req/s | ÷ gunicorn | p50 ms | p99 ms | p99 ÷ gunicorn | server CPU µs/request | errors | "
                 "slots: req/s, p99 ms (min–max) |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for srv in ordered(per):
            e = per[srv]
            if e.get("rps") is None:
                lines.append(f"| {e.get('label', srv)} | failed: {str(e.get('error'))[:120]} | | | | | | | |")
                continue
            good = [r for r in e.get("slots", []) if r.get("rps")]
            rounds = (f"{len(good)}: {min(r['rps'] for r in good):.0f}–{max(r['rps'] for r in good):.0f}, "
                      f"{min(r['p99_ms'] for r in good):.1f}–{max(r['p99_ms'] for r in good):.1f}") if good else ""
            lines.append(f"| {e['label']} | {e['rps']:.0f} | {rfmt(ratio(e['rps'], ref.get('rps')))} | "
                         f"{dash(e.get('p50_ms'), '{:.2f}')} | {dash(e.get('p99_ms'), '{:.2f}')} | "
                         f"{rfmt(ratio(e.get('p99_ms'), ref.get('p99_ms')))} | "
                         f"{dash(e.get('server_cpu_us_per_request'), '{:.1f}')} | {e.get('errors', 0)} | {rounds} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def md_http2(results):
    """The HTTP/2 phase: h2load over h2c (prior knowledge), each server against granian."""
    h2 = results["phases"].get("http2") or {}
    if "error" in h2:
        return f"Not measured: {h2['error']}"
    cfg = results.get("config", {})
    parts = []
    for app in ("wsgi", "asgi"):
        if app not in h2:
            continue
        per = h2[app]
        ref = per.get("granian", {})
        lines = [f"**{APP_TITLES[app]}** (`tests/apps/{app}_app.py`, `GET /`)", "",
                 "| server | req/s | ÷ granian | mean ms | sd ms | max ms | failed | slots: req/s (min–max) |",
                 "|---|---:|---:|---:|---:|---:|---:|---|"]
        for srv in ordered(per):
            e = per[srv]
            if e.get("rps") is None:
                lines.append(f"| {e.get('label', srv)} | failed: {str(e.get('error'))[:120]} | | | | | | |")
                continue
            good = [r for r in e.get("slots", []) if r.get("rps")]
            spread = f"{len(good)}: {min(r['rps'] for r in good):.0f}–{max(r['rps'] for r in good):.0f}"
            lines.append(f"| {e['label']} | {e['rps']:.0f} | {rfmt(ratio(e['rps'], ref.get('rps')))} | "
                         f"{dash(e.get('mean_ms'), '{:.2f}')} | {dash(e.get('sd_ms'), '{:.2f}')} | "
                         f"{dash(e.get('max_ms'), '{:.1f}')} | {e.get('failed', 0) + e.get('non_2xx', 0)} | {spread} |")
        parts.append("\n".join(lines))
    if not parts:
        return ""
    head = (f"h2load, {cfg.get('http2_clients')} connections with {cfg.get('http2_streams')} streams each, "
            f"HTTP/2 with prior knowledge (h2c), {cfg.get('http2_rounds')} slots of "
            f"{cfg.get('http2_slot')} s per server taken in turn; the median slot. herdsman --engine native "
            "and granian serve with their default `http` (auto), hypercorn as everywhere else here.")
    return head + "\n\n" + "\n\n".join(parts)


def md_engine_profile(results):
    prof = results["phases"].get("engine_profile")
    if not prof:
        return None
    if prof.get("error"):
        return f"Not measured in this run: {prof['error']}"
    parts = []
    for app, e in prof.items():
        if e.get("error"):
            parts.append(f"**{APP_TITLES[app]}**: not measured ({short_error(e['error'])})")
            continue
        us = e.get("worker_cpu_us_per_request")
        th = e.get("threads_percent") or {}
        lines = [f"**{APP_TITLES[app]}**: one worker, {e['rps']} req/s, {dash(us, '{:.1f}')} µs of the worker's CPU "
                 f"a request ({th.get('engine thread', 0):.0f} % of it on the engine thread, "
                 f"{th.get('app threads', 0):.0f} % on the app's threads), {e['seconds']:g} s of perf samples.", "",
                 "| where | share of the worker's CPU | µs a request |", "|---|---:|---:|"]
        for name, pct in (e.get("categories_percent") or {}).items():
            lines.append(f"| {name} | {pct:.1f} % | {dash(us * pct / 100 if us else None, '{:.2f}')} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def md_boot(results):
    boot = results["phases"].get("boot") or {}
    if not boot:
        return "Not measured in this run."
    ref = boot.get(REF, {}).get("first_response_ms")
    lines = ["| server | first response, ms (median) | ÷ gunicorn | runs, ms | note |", "|---|---:|---:|---|---|"]
    for srv in ordered(boot):
        e = boot[srv]
        lines.append(f"| {e.get('label', srv)} | {dash(e.get('first_response_ms'))} | "
                     f"{rfmt(ratio(e.get('first_response_ms'), ref))} | "
                     f"{', '.join(f'{x:.0f}' for x in e.get('runs_ms', [])) or str(e.get('error'))[:100]} | "
                     f"{'; '.join(e.get('notes', []))} |")
    return "\n".join(lines)


def md_replacement(results):
    life = results["phases"].get("lifecycle") or {}
    if not life:
        return "Not measured in this run."
    ref = (life.get(REF, {}).get("replacement") or {}).get("median_ms")
    lines = ["| server | replacement, ms (median) | ÷ gunicorn | new process after, ms | runs, ms | "
             "SIGKILL under load: failed / sent |", "|---|---:|---:|---:|---|---|"]
    for srv in ordered(life):
        e = life[srv]
        rep = e.get("replacement") or {}
        kl = e.get("kill_under_load") or {}
        runs = ", ".join(f"{r['replacement_ms']:.0f}" for r in rep.get("runs", []) if "replacement_ms" in r)
        if rep.get("median_ms") is None:
            runs = "not replaced: " + short_error(rep.get("error"))
        if "failed" in kl:
            kill = f"{kl['failed']} / {kl['ok'] + kl['failed']}"
            if kl.get("notes"):
                kill += " (" + "; ".join(short_error(n) for n in kl["notes"]) + ")"
        else:
            kill = str(kl.get("error", "–"))[:120]
        lines.append(f"| {e.get('label', srv)} | {dash(rep.get('median_ms'))} | {rfmt(ratio(rep.get('median_ms'), ref))} | "
                     f"{dash(rep.get('new_process_median_ms'))} | {runs} | {kill} |")
    lags = []
    for r in ((life.get("herdsman") or {}).get("replacement") or {}).get("runs", []):
        boot = (r.get("herdsman_boot_ms") or [None])[0]
        if boot is not None and r.get("new_process_ms") is not None:
            lags.append(r["replacement_ms"] - r["new_process_ms"] - boot)
    if lags:
        lines.append(f"\nProbing lag, from herdsman's log (kill → new process seen → `worker ready` → first answer): "
                     f"{', '.join(f'{x:.0f}' for x in lags)} ms (the parts come from two clocks a few ms apart).")
    return "\n".join(lines)


def md_graceful_stop(results):
    life = results["phases"].get("lifecycle") or {}
    if not life:
        return "Not measured in this run."
    legacy = any("reloads" in e for e in life.values())  # a run from before the replacements phase
    heads = ["server"] + (["reloads done", "requests failed / sent over the reloads (fresh connections)"] if legacy
                          else []) + ["slow requests failed at SIGTERM", "master exit after SIGTERM, s"]
    aligns = ["---"] + (["---:", "---"] if legacy else []) + ["---", "---:"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(aligns) + "|"]
    for srv in ordered(life):
        e = life[srv]
        gs = e.get("graceful_stop") or {}
        if "failed" in gs:
            stop = f"{gs['failed']} / {gs['in_flight']}"
            if gs.get("errors"):
                stop += " (" + ", ".join(gs["errors"]) + ")"
        else:
            stop = str(gs.get("error", "–"))[:120]
        cells = [e.get("label", srv)]
        if legacy:
            rl = e.get("reloads") or {}
            if "failed" in rl:
                rld = f"{rl['failed']} / {rl['ok'] + rl['failed']}"
                if rl.get("errors"):
                    rld += " (" + ", ".join(f"{k} ×{v}" for k, v in rl["errors"].items()) + ")"
                cells += [f"{rl.get('reloads_done')} / {rl.get('reloads_asked')}", rld]
            else:
                cells += ["–", str(rl.get("error", "–"))[:120]]
        cells += [stop, dash(gs.get("exit_s"), "{:.2f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def errors_text(errors):
    return ", ".join(f"{k} ×{v}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1])) if errors else ""


def repl_cell(r):
    """failed / sent, and the worst event, for one kind in one mode."""
    if not r:
        return "–"
    if "failed" not in r:
        return short_error(r.get("error"))
    sent = r["failed"] + r["ok"]
    cell = f"{r['failed']} / {sent}"
    per = r.get("per_event_failed") or []
    if r["failed"] and len(per) > 1:
        cell += f" (at most {max(per)} in one)"
    if r.get("errors"):
        cell += f"; {errors_text(r['errors'])}"
    if r.get("notes"):
        cell += "; " + "; ".join(short_error(n) for n in r["notes"])[:160]
    return cell


def md_replacements(results):
    repl = results["phases"].get("replacements") or {}
    cfg = results["config"]
    if not repl:
        return "Not measured in this run."
    parts = []
    for app, per in repl.items():
        if not per:
            continue
        n = cfg.get("repl_workers", cfg["workers"])
        lines = [f"**{APP_TITLES[app]}** (`tests/apps/{app}_app.py`, `GET /`, {workers(n)})", "",
                 "| server | event | how | events | keep-alive: failed / sent | fresh: failed / sent | "
                 "settled after, s (median, keep-alive / fresh) |",
                 "|---|---|---|---:|---|---|---|"]
        for srv in ordered(per):
            e = per[srv]
            name = e.get("label", label(srv, "asgi" if app in ASGI_APPS else "wsgi"))
            if "modes" not in e:
                lines.append(f"| {name} | | failed: {short_error(e.get('error'))} | | | | |")
                continue
            modes = e["modes"]
            for kind in ["control"] + KINDS:
                rs = {m: (modes.get(m) or {}).get(kind) for m in MODES}
                if kind != "control" and kind not in e.get("how", {}):
                    why = e.get("unsupported", {}).get(kind, "not supported")
                    lines.append(f"| {name} | {KIND_TITLES[kind]} | not supported: {why} | | | | |")
                    continue
                if kind == "control":
                    how = f"none: {cfg.get('repl_control_s', 0):g} s of load"
                    events = ""
                    cells = {m: (f"{r['failed']} / {r['failed'] + r['ok']}" + (f"; {errors_text(r['errors'])}" if r.get("errors") else "")
                                 if r and "failed" in r else "–") for m, r in rs.items()}
                else:
                    how = e["how"][kind]
                    counts = [str(r.get("events")) + (f" of {r['asked']}" if r.get("asked") and r.get("events", 0) < r["asked"]
                                                      else "")
                              for r in rs.values() if r and "events" in r]
                    events = " / ".join(counts) if len(set(counts)) > 1 else (counts[0] if counts else "")
                    if kind == "recycle":
                        lim = [f"N={r['max_requests']} {'keep-alive' if m == 'keepalive' else 'fresh'}"
                               for m, r in rs.items() if r and r.get("max_requests")]
                        how += (" (" + ", ".join(lim) + f", {cfg.get('repl_recycle_s', 0):g} s each)") if lim else ""
                    cells = {m: repl_cell(r) for m, r in rs.items()}
                settled = " / ".join(dash((r or {}).get("median_settled_s"), "{:.2f}") for r in rs.values())
                if kind in ("control", "recycle"):
                    settled = ""
                lines.append(f"| {name} | {KIND_TITLES[kind]} | {how} | {events} | {cells['keepalive']} | "
                             f"{cells['fresh']} | {settled} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def md_accesslog(results):
    rows = [("", r) for r in accesslog_rows(results)] + [
        (", `--engine native`", r) for r in accesslog_rows(results, NATIVE)]
    if not rows:
        return "Not measured in this run."
    lines = ["| app | herdsman, log off | herdsman, log on | on ÷ off | gunicorn, log off | gunicorn `--access-logfile -` | "
             "gunicorn on ÷ off | herdsman on ÷ gunicorn on | access lines written (herdsman / gunicorn) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for engine, (app, off, on, goff, gon) in rows:
        written = " / ".join(str((e.get("access_log") or {}).get("access_lines", "–")) for e in (on, gon))
        lines.append(f"| {APP_TITLES[app]}{engine} | {dash(off.get('rps'))} | {dash(on.get('rps'))} | "
                     f"{rfmt(ratio(on.get('rps'), off.get('rps')))} | {dash(goff.get('rps'))} | {dash(gon.get('rps'))} | "
                     f"{rfmt(ratio(gon.get('rps'), goff.get('rps')))} | {rfmt(ratio(on.get('rps'), gon.get('rps')))} | "
                     f"{written} |")
    return "\n".join(lines)


def md_memory(results):
    mem = results["phases"].get("memory") or {}
    idle = results["phases"].get("idle") if isinstance(results["phases"].get("idle"), dict) else {}
    out = []
    if mem:
        counts = sorted({int(k) for s in mem for k in mem[s].get("by_workers", {})})
        lines = ["| server | workers | master RSS, MiB | total RSS, MiB | total PSS, MiB | PSS per worker, MiB | "
                 f"master CPU, ms/min (over {results['config']['mem_window']:.0f} s) | processes |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for srv in ordered(mem):
            for n in counts:
                r = mem[srv].get("by_workers", {}).get(str(n), {})
                if "master_rss_kib" not in r:
                    lines.append(f"| {mem[srv].get('label', srv)} | {n} | failed: {str(r.get('error'))[:100]} | | | | | |")
                    continue
                per_worker = ((r["total_pss_kib"] - r["master_pss_kib"]) / 1024 / r["workers_seen"]
                              if r.get("workers_seen") else None)
                note = " ⁴" if r.get("note") else ""
                lines.append(f"| {mem[srv].get('label', srv)} | {n} | {r['master_rss_kib'] / 1024:.1f}{note} | "
                             f"{r['total_rss_kib'] / 1024:.0f} | {r['total_pss_kib'] / 1024:.0f} | {dash(per_worker, '{:.1f}')} | "
                             f"{r['master_cpu_ms_per_min']:.1f} | {r['processes']} |")
        out.append("\n".join(lines))
    if idle:
        counts = sorted({k for s in idle for k in idle[s]}, key=int)
        lines = ["| server | " + " | ".join(f"{workers(c)}: master CPU per idle minute, wakeups" for c in counts) + " |",
                 "|---|" + "---:|" * len(counts)]
        for srv in ordered(idle):
            cells = []
            for c in counts:
                r = idle[srv].get(c) or {}
                if "master_cpu_ms_per_min" in r:
                    cells.append(f"{r['master_cpu_ms_per_min']:.1f} ms, {r.get('master_wakeups_per_s', 0):.1f} wakeups/s")
                else:
                    cells.append(str(r.get("error", "–"))[:80])
            lines.append(f"| {label(srv)} | " + " | ".join(cells) + " |")
        out.append(f"Idle for {results['config']['idle_seconds']:.0f} s, every server started at the same time "
                   "(CPU time is counted per process, so they do not disturb one another's figure):\n\n"
                   + "\n".join(lines))
    return "\n\n".join(out) if out else "Not measured in this run."


METHOD = """\
- **Same everything.** Every server runs the same app file from `tests/apps/` with the same Python
  and the same packages (`bench/.venv-peers`, pinned in `bench/requirements.txt`; uvicorn, uvloop
  and httptools are the same for herdsman, gunicorn's UvicornWorker and uvicorn), the same worker
  count, on `127.0.0.1` only, access logs off (`--no-access-log` for herdsman, uvicorn and
  granian; gunicorn and hypercorn log no access by default) except in the access-log rows:
  herdsman without `--no-access-log` (its default: on, gunicorn's format, to standard output) and
  gunicorn with `--access-logfile -` (the same format, to standard output); every server's
  standard output goes to a file (its log in the results directory). The apps are the test apps
  (`tests/apps/`: one set of files for the tests and the benchmark). Commands:
  - herdsman: `herdsman --python bench/.venv-peers/bin/python --chdir tests/apps -w N -b 127.0.0.1:PORT --interface asgi|wsgi --no-access-log APP`
    (workers: uvicorn; WSGI through a2wsgi with 10 threads);
  - gunicorn: `gunicorn -k uvicorn_worker.UvicornWorker -w N -b 127.0.0.1:PORT --no-control-socket APP` for ASGI
    apps; for WSGI apps plain gunicorn is the natural peer: `-k gthread --threads 10` (10 threads, like
    herdsman's a2wsgi pool). The ratios of WSGI rows are against gunicorn gthread;
  - uvicorn: `uvicorn --workers N --host 127.0.0.1 --port PORT --interface asgi3|wsgi --no-access-log APP`;
  - granian: `granian --interface asgi|wsgi --workers N --host 127.0.0.1 --port PORT --no-access-log --respawn-failed-workers APP`
    (respawn is opt-in in granian; without it a killed worker is never replaced);
  - herdsman with its native engine: the same plus `--engine native` (its Rust engine, HTTP/1.1
    on hyper; a WSGI app on `--threads`, default 4, Python threads; an ASGI app on the worker's
    asyncio loop, uvloop's when installed);
  - herdsman with a zygote (all but the throughput runs): the same plus `--spawn zygote --preload`;
  - hypercorn (all but the throughput runs): `hypercorn -k uvloop -w N -b 127.0.0.1:PORT APP`.
- **Processes.** Each server is started by the harness in a session of its own and ended by pid
  (SIGTERM, then SIGKILL of every process of its session), with a hard timeout. Its workers are
  the master's children (less multiprocessing's resource tracker for uvicorn and hypercorn).
  A server counts as *ready* when it answers `GET /` with 200, has its N workers, and the CPU time
  of its whole process tree grew by less than 12 ms in each of two consecutive 250 ms windows
  (booting workers burn CPU): the same test for every server, since the peers do not all say when
  they are ready.
- **Throughput and latency**: for each app, every server is started (N workers each) and left
  idle; after a warm-up run against each (figures dropped), `wrk -t1 -cC -d2s --latency` runs
  against one server at a time, in turn, for several rounds, the order rotating each round. Each
  figure is the median over a server's slots (requests per second, p50 and p99 as wrk reports
  them); the table gives the slots' range. *Server CPU µs/request* is the CPU time of the whole
  server (master and workers, from `/proc`) over a slot divided by the requests wrk completed in
  it: the cost of a request, whatever share of the CPUs wrk took. Interleaving short slots spreads the CPU bursts of
  other users of the machine over every server alike. The tolerance of a ratio ("noise") is two
  standard errors computed from the slots' spread. **wrk runs on the same 2 CPUs as the
  servers**: it takes CPU from the workers, so absolute figures are lower than on a machine with
  a separate client, and only the ratios are meant to be compared.
- **Cold boot**: from the `exec` of the server command to its first `200` on `GET /`, polled
  every 5 ms (median of the runs).
- **Replacement after SIGKILL**: with N workers ready, the oldest worker gets `SIGKILL`, and
  from then on a fresh connection is opened every 2 ms (1 s timeout). The replacement time runs
  from the `SIGKILL` to the first `200` carrying the pid of a process that did not exist before
  (the apps answer with their pid): the time until the server has N workers serving again. The
  surviving workers keep answering the other probes; once the new worker accepts, it gets its
  share of them within a few probes, so the figure carries a few ms of probing lag (for herdsman,
  whose log says when each worker became ready, the lag is given under the table). The grey part of
  the plot is when the new process first appeared among the master's children (polled every
  2 ms). No worker younger than 6 s is killed (granian stops the whole server when a worker slot
  dies again within 5.5 s of its respawn: its crash-loop guard). The floor the target compares
  with, a fresh `python -c 'import APP'`, is timed right before each kill, since the machine's
  load drifts. Separately, under steady load (the client below), a worker is SIGKILLed twice and
  the failed requests are counted until a new worker has answered.
- **Steady load** (kill under load): client threads of the harness, each sending `GET /` on a
  fresh connection in a loop (2 ms pause, 10 s timeout); a failed request is anything but a 200:
  refused, reset, timed out, 5xx.
- **Replacement under load**: for each app and server of the matrix, one server with N workers
  takes each event in turn under wrk at full load (`wrk -t1 -cC --timeout 10s`, stopped with
  `SIGINT` once the event has settled, which makes wrk print its figures), first with keep-alive
  connections, then with `-H 'Connection: close'` (a fresh connection per request). An event has
  settled when every old worker pid has exited, N workers are alive and a new worker has answered
  a fresh connection; the same rule for every server. Events: a reload (`SIGHUP` for every server;
  hypercorn's stops all its workers before starting new ones), a binary upgrade (herdsman:
  `SIGUSR2`, the master re-executes itself in place; gunicorn: `SIGUSR2`, then, once the new
  master's workers answer, `SIGTERM` to the old master, its documented sequence), scale-down and
  back up (`SIGTTOU`, then `SIGTTIN`). Max-requests recycling runs on a second server of each
  kind, started with its own flag (herdsman and gunicorn `--max-requests N --max-requests-jitter
  N/10`, uvicorn `--limit-max-requests` and `--limit-max-requests-jitter`, hypercorn
  `--max-requests` and `--max-requests-jitter`; granian has no request limit, only
  `--workers-lifetime` of at least 60 s), for one window; N is set from the control window's
  throughput so that each worker recycles about every few seconds, and the recycles counted are
  the new worker pids seen during the window and 1.5 s after it (polled every 50 ms). What a
  server does not support is said in its row and not measured. A control window (the same load, no event) gives the failures of the
  load alone.
- **Graceful stop**: K requests to `/slow?s=S` (the app sleeps S seconds), and once they are in
  flight, `SIGTERM` to the master. Every request not answered 200 failed.
- **Memory**: each server alone, idle and ready, for each worker count: the master's `VmRSS`,
  the sum of `VmRSS` and the sum of `Pss` (`/proc/PID/smaps_rollup`) over every process of the
  server. PSS splits shared pages between the processes that map them; it is the honest total.
  Master CPU: the master's own CPU time (`/proc/PID/task/*/schedstat`, ns) over a short idle
  window at each count, and over a full idle minute with every server started at once, with its
  wakeups (context switches of all its threads). Then, the CPU figures taken, `strace -c -f -p`
  on every idle master for a few seconds gives the profile: which system calls, how many per
  wakeup.
- **Floor for a restart**: a fresh interpreter that imports the app (`python -c 'import APP'`)
  is what any exec-based worker must pay; the replacement target is that plus 50 ms. It is timed
  right before each kill; the "for scale" figures are medians taken at the start of the run.
- **Machine noise**: the CPU used on the machine by processes that are not the benchmark's own
  (other users' builds and tests) is measured per phase from `/proc/stat`, in CPUs busy on average.
"""


def write(results, docs, smoke=False):
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    pngs = {}
    for name, fn in (("bench-throughput.png", plot_throughput), ("bench-replacement.png", plot_replacement),
                     ("bench-memory.png", plot_memory)):
        try:
            if fn(results, docs / name):
                pngs[name] = True
        except Exception as e:  # noqa: BLE001 - a plot must not lose the figures
            print(f"[bench] plot {name} failed: {e}")
    (docs / "benchmarks.md").write_text(markdown(results, pngs, smoke))


def markdown(results, pngs, smoke):
    m = results["machine"]
    v = results["versions"]
    cfg = results["config"]
    lg = results["loadgen"]
    q = results.get("quiet_wait", {})
    times = results.get("phase_times", {})
    busiest = max((t.get("foreign_cpus", 0) for t in times.values()), default=0)
    if q.get("quiet") is False:
        quiet = (f"**The machine was not quiet**: after waiting {q.get('waited_s')} s the 1-minute load average "
                 f"was still {q.get('load1')} (other users' builds and tests), and the run went ahead. ")
    elif q.get("quiet"):
        quiet = f"The run started once the 1-minute load average was {q.get('load1')} (below 1.0). "
    else:
        quiet = ""
    quiet += (f"Other processes used {results.get('foreign_cpus', 0):.2f} CPUs on average during the run "
              f"(at most {busiest:.2f} in one phase; see the phase table at the end): figures measured "
              "in the same phase share that noise, which is why only ratios are compared.")
    kind = "SMOKE RUN (reduced: proves the harness works; the figures mean nothing)" if smoke else ""
    tlist = targets(results)
    tlines = ["| target | herdsman | detail |", "|---|---|---|"]
    for name, verdict, detail in tlist:
        mark = {"met": "✅ met", "missed": "❌ missed", "not measured": "– not measured"}[verdict]
        tlines.append(f"| {name} | {mark} | {detail} |")
    missed = [t for t in tlist if t[1] == "missed"]

    vers = ", ".join(f"{k} {v[k]}" for k in ("python", "gunicorn", "uvicorn-worker", "uvicorn", "granian", "hypercorn",
                                              "a2wsgi", "fastapi", "starlette", "flask", "uvloop", "httptools")
                     if k in v)
    phase_rows = ["| phase | seconds | other processes' CPU use (CPUs) |", "|---|---:|---:|"]
    for name, t in times.items():
        phase_rows.append(f"| {name} | {t['seconds']:.0f} | {t['foreign_cpus']:.2f} |")

    s = []
    s.append("# Benchmarks\n")
    s.append("<!-- Generated by bench/run.py (bench/report.py) from docs/benchmarks.json. "
             "Do not edit by hand: run `bash bench/run.sh`. -->\n")
    if kind:
        s.append(f"**{kind}**\n")
    s.append(
        "herdsman against the servers its users choose between: gunicorn with uvicorn's worker, "
        "`uvicorn --workers`, granian and hypercorn, all measured the same way, on the same machine, in "
        "the same run. Absolute figures on a shared 2-core machine drift from run to run, so every "
        "comparison is a **ratio against gunicorn + UvicornWorker measured in the same run** (gunicorn "
        "gthread for the WSGI apps), and against `uvicorn --workers`.\n")
    s.append("To reproduce, from a clone of the repository on Linux (root or sudo for `apt-get install wrk`):\n\n"
             "```console\nbash bench/run.sh            # the full run, about 20 minutes; rewrites this page\n"
             "bash bench/run.sh --smoke    # seconds: proves the harness works, figures meaningless\n```\n")
    s.append("It installs wrk if missing, builds the pinned peers venv `bench/.venv-peers` and "
             "`cargo build --release`, waits (up to 15 min) for the machine's 1-minute load average to drop "
             "below 1.0, runs everything, and writes this page, the raw figures "
             "([benchmarks.json](benchmarks.json)) and the plots.\n")
    s.append(f"- **Date**: {results['date']}; run took {results.get('elapsed_s', 0) / 60:.1f} min.")
    s.append(f"- **Machine**: {m['nproc']} CPUs ({m['cpu_model'] or 'unknown model'}), {m['memory']} RAM, "
             f"Linux {m['kernel']}; load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_start'])}.")
    s.append(f"- **Versions**: herdsman {v.get('herdsman', '?').replace('herdsman ', '')} "
             f"({v.get('herdsman_build')} build, commit {v.get('herdsman_commit', '?')}); {vers}.")
    if lg["tool"] == "wrk":
        s.append(f"- **Load generator**: wrk {v.get('wrk', '')}, {lg['connections']} connections, one thread, "
                 "on the same CPUs as the servers (it takes CPU from them).")
    else:
        s.append(f"- **Load generator**: **the harness's pure-Python fallback** ({lg['connections']} keep-alive "
                 "connections, one thread each), on the same CPUs as the servers. "
                 + (lg.get("note") or "It is far weaker than wrk: its throughput figures are bounded by the client."))
    s.append(f"- **Workers**: {cfg['workers']} for throughput, boot and lifecycle figures; "
             f"{', '.join(str(n) for n in cfg['mem_counts'])} for memory.")
    s.append(f"- **Noise**: {quiet}\n")

    s.append("## Headline\n")
    s.append(headline(results))
    s.append("\n¹ gunicorn gthread (10 threads) for the WSGI rows. Ratios are herdsman's figure divided by the "
             "peer's: above 1.0 is better for req/s, below 1.0 is better for latency, time and memory.")
    if accesslog_rows(results):
        s.append("² herdsman with its access log on (its default, to standard output) against gunicorn with "
                 "`--access-logfile -`; both write to standard output, which the harness redirects to a file. "
                 "The other throughput rows run without access log.")
    if results["phases"].get("replacements"):
        s.append("³ failed requests (wrk's socket errors and non-2xx answers) in that many events under full load; "
                 "\"not supported\": the server has no such event. See *Replacement under load*.")
    s.append("")
    s.append("## Targets\n")
    s.append("Measured by this benchmark, not asserted by the tests.\n")
    s.append("\n".join(tlines) + "\n")
    if missed:
        s.append("Where a target is missed, the detail column gives the measured profile of the miss; "
                 "see the sections below for the figures behind it.\n")
        s.append(miss_notes(results, missed))
    s.append(f"## Throughput and latency ({workers(cfg['workers'])})\n")
    if pngs.get("bench-throughput.png"):
        s.append("![throughput and p99 latency](bench-throughput.png)\n")
    s.append(md_throughput(results) or "Not measured in this run.")
    s.append("")
    if results["phases"].get("throughput"):
        s.append("**What herdsman adds per request.** " + throughput_note(results) + "\n")
    if accesslog_rows(results):
        s.append("### The access log, on and off\n")
        s.append("The same throughput slots, interleaved with the rows above: herdsman with its access log on "
                 "(its default: gunicorn's format, to standard output) and gunicorn with `--access-logfile -` "
                 "(the same format and destination). The harness sends every server's standard output to a "
                 "file, its log in the results directory, so both write to standard output redirected to a file; "
                 "the access lines counted in that file afterwards prove each log was on.\n")
        s.append(md_accesslog(results) + "\n")
    wstable = md_websocket(results)
    if wstable:
        s.append(f"## WebSocket echo ({workers(cfg['workers'])})\n")
        s.append(f"`tests/apps/ws_app.py` (raw ASGI: each text message echoed back) under bench/wsload.py: "
                 f"{cfg.get('ws_connections')} WebSockets, each sending a short text message and waiting for its "
                 f"echo before the next, for {cfg.get('ws_slot')} s slots after {cfg.get('ws_warmup')} s of "
                 f"warm-up, taken in turn ({cfg.get('ws_rounds')} rounds, medians). The client is one Python process "
                 "on uvloop sharing the CPUs with the servers, the same for every server. uvicorn, gunicorn's "
                 "UvicornWorker and herdsman's uvicorn engine use uvicorn's default WebSocket implementation "
                 "(websockets' sans-I/O one); granian and the native engine their own in Rust.\n")
        s.append(wstable + "\n")
    http2 = md_http2(results)
    if http2:
        s.append(f"## HTTP/2 ({workers(cfg['workers'])})\n")
        s.append(http2 + "\n")
    engine = md_engine_profile(results)
    if engine:
        s.append("## Where the native engine's time goes\n")
        s.append("One worker of `herdsman --engine native` (default threads) at full load from wrk (keep-alive), "
                 "sampled by `perf record -F 1999` on every thread of the worker; each sample is put in the first "
                 "category its thread, object and symbol match (bench/run.py, `ENGINE_CATEGORIES`), and the "
                 "worker's CPU per request (from /proc) is split by those shares. Waiting for the GIL costs no "
                 "CPU; what it costs is in the thread switches and GIL rows.\n")
        s.append(engine + "\n")
    s.append(f"## Cold boot ({APP_TITLES.get(cfg['lifecycle_app'])} app, {workers(cfg['workers'])})\n")
    s.append(md_boot(results) + "\n")
    imp = results["phases"].get("imports") or {}
    s.append(f"## Replacement of a killed worker ({APP_TITLES.get(cfg['lifecycle_app'])} app, {workers(cfg['workers'])})\n")
    if imp:
        s.append(f"For scale, on this machine: a bare `python -c pass` takes {dash(imp.get('python_start_ms'))} ms, "
                 f"importing the app {dash(imp.get('python_import_app_ms'))} ms, uvicorn and the app "
                 f"{dash(imp.get('python_import_uvicorn_app_ms'))} ms (fresh interpreters, medians). "
                 "gunicorn forks its already-started master, so it skips the interpreter start that herdsman, "
                 "uvicorn and hypercorn pay for every new worker (granian's times show it forks too); "
                 "`herdsman --spawn zygote --preload` forks its workers from a warm interpreter that has "
                 "imported the app once. gunicorn runs here without `--preload` (its default, and the only way its "
                 "`SIGHUP` reloads the code), so each new gunicorn worker still imports the app after the fork; "
                 "herdsman's zygote preloads per generation and still reloads the code on `SIGHUP`.\n")
    if pngs.get("bench-replacement.png"):
        s.append("![replacement time after SIGKILL](bench-replacement.png)\n")
    s.append(md_replacement(results) + "\n")
    if results["phases"].get("replacements"):
        s.append("## Replacement under load\n")
        s.append(replacements_intro(results) + "\n")
        s.append(md_replacements(results) + "\n")
    life = results["phases"].get("lifecycle") or {}
    if any("reloads" in e for e in life.values()):  # a run from before the replacements phase
        s.append(f"## Reloads and graceful stop ({APP_TITLES.get(cfg['lifecycle_app'])} app, {workers(cfg['workers'])})\n")
        s.append(f"This run predates the replacements phase: {cfg.get('reloads')} reloads (`SIGHUP`) under steady load "
                 f"from {cfg['load_threads']} client threads on fresh connections only (keep-alive clients were not "
                 f"measured); then, on a fresh server, {cfg['slow_requests']} requests of {cfg['slow_seconds']:.0f} s in "
                 "flight and `SIGTERM`.\n")
    else:
        s.append(f"## Graceful stop ({APP_TITLES.get(cfg['lifecycle_app'])} app, {workers(cfg['workers'])})\n")
        s.append(f"{cfg['slow_requests']} requests of {cfg['slow_seconds']:.0f} s in flight, then `SIGTERM`.\n")
    s.append(md_graceful_stop(results) + "\n")
    s.append(f"## Memory and idle CPU by worker count ({APP_TITLES.get(cfg['lifecycle_app'])} app)\n")
    s.append("The worker counts go past the 2 CPUs on purpose: what grows with them is the master's cost "
             "per worker.\n")
    if pngs.get("bench-memory.png"):
        s.append("![master RSS and total PSS by worker count](bench-memory.png)\n")
    s.append(md_memory(results))
    s.append("\n⁴ `uvicorn --workers 1` (and `hypercorn -w 1`) serve in their only process: no master, the "
             "figure is the worker's.\n" if _single(results) else "")
    s.append("## Method\n")
    s.append(METHOD)
    s.append("### Phases\n")
    s.append("\n".join(phase_rows) + "\n")
    return "\n".join(x for x in s if x is not None) + "\n"


def replacements_intro(results):
    cfg = results["config"]
    lg = results["loadgen"]
    tool = (f"wrk with {cfg.get('repl_connections')} connections" if lg["tool"] == "wrk"
            else f"the Python fallback load generator ({min(cfg.get('repl_connections', 16), 16)} connections)")
    return (f"Every way a server replaces or retires a worker while it keeps serving, one event at a time under "
            f"full load from {tool}, twice: with keep-alive connections (wrk's default, and what nginx's upstream "
            "`keepalive`, load balancers and client pools do) and with fresh connections (`Connection: close` on "
            "every request). A failed request is one of wrk's socket errors (connect, read, write, timeout at 10 s) "
            "or an answer that is not 2xx/3xx. Each event has its own load window: "
            f"{cfg.get('repl_lead_s')} s of load, the event, until it has settled (every old worker gone, the "
            f"workers back to their number, a new one answering), then {cfg.get('repl_tail_s')} s more. "
            f"Reloads: up to {cfg.get('repl_reloads')}, upgrades: up to {cfg.get('repl_upgrades')}, scale-down and up: "
            f"{cfg.get('repl_scales')} (no new event of a kind once its events took {cfg.get('repl_kind_budget_s'):.0f} s, "
            "after at least 2: \"2 of 5\" in the events column). Recycling: one window of "
            f"{cfg.get('repl_recycle_s'):g} s on a server started with a request limit N of about "
            f"{cfg.get('repl_recycle_every_s')} s of its own control throughput per worker (so each server recycles about as "
            "often), jitter N/10; the events are the new workers seen during the window or within 1.5 s after it. The control row is the same load with no "
            "event: failures there come from the load itself, not from a replacement.")


def _single(results):
    mem = results["phases"].get("memory") or {}
    return any(r.get("note") for s in mem.values() for r in s.get("by_workers", {}).values())


def throughput_note(results):
    """Where herdsman's requests cost more than the same uvicorn's under the peers."""
    ph = results["phases"]
    tp = ph.get("throughput") or {}
    prof = ph.get("profile") or {}
    parts = []
    for app, per in tp.items():
        h, u = per.get("herdsman", {}), per.get("uvicorn", {})
        hc, uc = h.get("server_cpu_us_per_request"), u.get("server_cpu_us_per_request")
        if hc and uc:
            parts.append(f"{APP_TITLES[app]}: herdsman {hc:.1f} µs of server CPU per request, uvicorn --workers "
                         f"{uc:.1f} µs ({hc - uc:+.1f} µs)")
    text = ("herdsman's workers run the same uvicorn, uvloop and httptools as uvicorn --workers, so the "
            "difference is what herdsman adds per request (for WSGI apps the bridges differ: a2wsgi in herdsman, "
            "uvicorn's own WSGIMiddleware in uvicorn). Measured CPU per request (whole server, median slot): "
            + "; ".join(parts) + "." if parts else "")
    if prof.get("wrapper_us") is not None:
        text += (f" herdsman's worker runtime wraps the app to count requests in flight (for the heartbeats, "
                 f"the stall report and max-requests): alone, that wrapper costs {prof['wrapper_us']:.2f} µs a "
                 f"call on this machine (the plain ASGI app itself {prof['app_us']:.2f} µs; "
                 "bench/wrapper_profile.py).")
        a = tp.get("asgi", {})
        hc = a.get("herdsman", {}).get("server_cpu_us_per_request")
        uc = a.get("uvicorn", {}).get("server_cpu_us_per_request")
        if hc and uc and hc - uc > 0.1:
            share = prof["wrapper_us"] / (hc - uc)
            text += (f" On the plain ASGI app, where a request costs least and any addition shows most, the "
                     f"wrapper accounts for about {min(share, 1):.0%} of herdsman's extra {hc - uc:.1f} µs per "
                     "request" + ("; the rest is not attributed by this benchmark." if share < 0.8 else "."))
    text += (" A ratio outside the noise in one app only is more likely drift than a gap; the same sign in "
             "every app and in the CPU per request is a real cost.")
    return text


def idle_note(ph):
    """The why of herdsman's idle CPU, from the idle minute and the strace -c profile."""
    idle = (ph.get("idle") or {}).get("herdsman", {})
    rows = {int(n): e for n, e in idle.items() if isinstance(e, dict) and e.get("master_cpu_ms_per_min") is not None}
    if not rows:
        return "Not measured."
    lo, hi = min(rows), max(rows)
    text = []
    for n in sorted(rows):
        e = rows[n]
        wk = e.get("master_wakeups_per_s") or 0
        per_wake = e["master_cpu_ms_per_min"] / 60 / wk * 1000 if wk else None
        st = e.get("strace") or {}
        reads = st.get("by_syscall_per_s", {}).get("read")
        poll_us = (st.get("usecs_per_call") or {}).get("poll")
        t = (f"at {workers(n)} the idle master woke {wk:.1f} times a second and spent "
             f"{e['master_cpu_ms_per_min']:.1f} ms of CPU a minute, {dash(per_wake)} µs per wakeup")
        if reads is not None and wk:
            t += f"; {reads / wk:.1f} `read` calls per wakeup"
        if poll_us is not None:
            t += f", `poll` over its {n + 2} fds {poll_us} µs a call as strace -c reports it"
        text.append(t)
    out = "; ".join(text) + ". "
    out += ("An idle worker sends a heartbeat every timeout/4 (7.5 s by default), and each heartbeat wakes the master: the wakeups grow "
            "linearly with the worker count")
    if hi != lo and rows[lo]["master_cpu_ms_per_min"]:
        g = rows[hi]["master_cpu_ms_per_min"] / rows[lo]["master_cpu_ms_per_min"]
        out += (f", and the CPU time grew {g:.1f}× for {hi / lo:.0f}× the workers"
                + (" (faster than the wakeups: the cost of each wakeup grows too, with the number of fds the "
                   "loop polls and reads)" if g > 1.2 * hi / lo else ""))
    out += (". Fewer wakeups when idle (heartbeats batched or spaced out while nothing changes) is what would "
            "make the idle cost independent of the worker count.")
    return out


def miss_notes(results, missed):
    """A short profile per missed target, from the figures of this run."""
    ph = results["phases"]
    notes = []
    for name, _, _ in missed:
        if name.startswith("herdsman with its access log") and any(n.startswith("- **Access log.") for n in notes):
            continue
        if name.startswith("Replacement"):
            notes.append(
                "- **Replacement.** The floor in the target is a fresh interpreter importing the app. A herdsman "
                "worker is such an interpreter that also imports uvicorn (with uvloop and httptools) and herdsman's "
                "runtime, runs the lifespan startup and reports `ready` over its channel; the profile in the table "
                "above splits the time between the master (fork), the interpreter start and the runtime. gunicorn "
                "skips the interpreter start and the uvicorn import by forking its already-started master; "
                "herdsman's `--spawn zygote --preload` does the same from a warm interpreter (see its row in the "
                "replacement table).")
        elif name.startswith("Throughput"):
            notes.append("- **Throughput and p99.** See *What herdsman adds per request* under the throughput "
                         "tables.")
        elif name.startswith("0 failed"):
            notes.append("- **Failed requests.** The error kinds are in the replacement tables (wrk's connect: no "
                         "worker was accepting; read: the connection was closed or reset under a request, as when a "
                         "worker closes an idle keep-alive connection the client is sending on; timeout: no answer "
                         "in 10 s; non-2xx: the server answered an error).")
        elif name.startswith("herdsman with its access log"):
            notes.append("- **Access log.** The access-log section under the throughput tables gives both servers "
                         "with the log on and off, and the access lines each wrote.")
        elif name.startswith("Master RSS"):
            notes.append("- **Master RSS.** See the memory table for how it grows with the worker count.")
        elif name.startswith("Master idle"):
            note = idle_note(ph)
            notes.append("- **Idle CPU.** " + note[0].upper() + note[1:])
    return "\n".join(notes) + "\n" if notes else ""


if __name__ == "__main__":
    # Re-render a report from raw results: python bench/report.py RESULTS.json OUT_DIR [--smoke]
    import sys

    res = json.loads(Path(sys.argv[1]).read_text())
    write(res, Path(sys.argv[2]), smoke="--smoke" in sys.argv or res.get("kind") == "smoke")
