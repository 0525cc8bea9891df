"""Helpers shared by the Python benchmarks in benches/ (not a benchmark itself).

The scripts import this with their own folder put first on sys.path, so they
run from any working directory:

    sys.dont_write_bytecode = True  # no benches/__pycache__
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchlib import ...
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """A condition that makes the benchmark meaningless; exits non-zero."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def env_without_tend() -> dict[str, str]:
    """This process's environment without any TEND_* variable (a token, a log level, a site,
    a fixed clock, a test hook), so that tend runs only as the benchmark sets it up."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TEND_")}


def run_main(main: Callable[[list[str]], int]) -> None:
    """The scripts' entry point: exit 1 on BenchError, 130 on ^C."""
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


# --------------------------------------------------------------------------
# Measurement


def maxrss_to_mib(ru_maxrss: int) -> float:
    # Linux reports KiB; macOS/BSD-derived Darwin reports bytes.
    if sys.platform == "darwin":
        return ru_maxrss / (1024 * 1024)
    return ru_maxrss / 1024


def _failure(argv: list[str], code: int, err) -> BenchError:
    err.seek(0)
    stderr = err.read().decode(errors="replace").rstrip()
    what = f"signal {-code}" if code < 0 else f"status {code}"
    return BenchError(
        f"run failed with {what}: {' '.join(argv)}\n"
        f"--- stderr ---\n{stderr or '(empty)'}\n--------------"
    )


def time_once(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run argv once as our direct child; return its wall time in ms."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        except OSError as e:
            raise BenchError(f"cannot start {argv[0]}: {e}") from e
        _, status, _ = os.wait4(proc.pid, 0)
        t1 = time.perf_counter()
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code  # we reaped it; stop Popen from trying again
        if code != 0:
            raise _failure(argv, code, err)
    return (t1 - t0) * 1000.0


# Why peak RSS is not taken from the timing runs above: a child forked (or
# vforked, as subprocess does) from this Python process starts life sharing or
# copying Python's ~10-15 MiB of memory, and Linux keeps that pre-exec
# high-water mark in the child's ru_maxrss across execve.  So a direct child's
# ru_maxrss can never read below Python's own size - `/bin/true` would show
# ~15 MiB, which would make the 10 MiB target unmeasurable.  Instead the
# memory runs are forked by a tiny /bin/sh that exits at once, leaving the
# measured process to us (we are its child subreaper, PR_SET_CHILD_SUBREAPER);
# we then os.wait4() that exact pid, so its rusage is its own and the floor is
# sh's ~1 MiB (`/bin/true` reads ~1 MiB, matching GNU time).
_SPAWN_SH = '"$@" </dev/null >/dev/null & echo $!'
_subreaper: bool | None = None


def _become_subreaper() -> bool:
    global _subreaper
    if _subreaper is None:
        _subreaper = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                PR_SET_CHILD_SUBREAPER = 36
                _subreaper = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            except (OSError, AttributeError):
                _subreaper = False
        if not _subreaper:
            log(
                "warning: cannot become a child subreaper; peak RSS is measured on "
                "direct children and includes this Python process's size as a floor"
            )
    return _subreaper


def _reap_strays() -> None:
    """Reap orphans (e.g. ansible helpers) that were reparented to us."""
    while True:
        try:
            pid, _, _ = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def rss_once(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run argv once; return its own peak RSS in MiB (see the note above)."""
    with tempfile.TemporaryFile() as err:
        if not _become_subreaper():
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )
            _, status, rusage = os.wait4(proc.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            if code != 0:
                raise _failure(argv, code, err)
            return maxrss_to_mib(rusage.ru_maxrss)
        try:
            sh = subprocess.Popen(
                ["/bin/sh", "-c", _SPAWN_SH, "sh", *argv],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        except OSError as e:
            raise BenchError(f"cannot start /bin/sh: {e}") from e
        out = sh.stdout.read() if sh.stdout else b""
        if sh.stdout:
            sh.stdout.close()
        _, sh_status, _ = os.wait4(sh.pid, 0)
        sh.returncode = os.waitstatus_to_exitcode(sh_status)
        try:
            pid = int(out.strip())
        except ValueError:
            raise _failure(["/bin/sh", "-c", _SPAWN_SH, *argv], sh.returncode or 1, err)
        # sh has exited, so the kernel has already reparented pid to us.
        _, status, rusage = os.wait4(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        _reap_strays()
        if code != 0:
            raise _failure(argv, code, err)
    return maxrss_to_mib(rusage.ru_maxrss)


def time_capture_once(
    argv: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)
) -> tuple[float, bytes, int]:
    """Run argv once as our direct child, its stdout to a temp file; (wall ms, stdout, code).

    Like time_once, but keeps stdout (read after the timed span) and accepts every exit code
    in `ok`, for tools whose exit code is a verdict (`tend test` exits 1 on a failed suite).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        except OSError as e:
            raise BenchError(f"cannot start {argv[0]}: {e}") from e
        _, status, _ = os.wait4(proc.pid, 0)
        t1 = time.perf_counter()
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        if code not in ok:
            raise _failure(argv, code, err)
        out.seek(0)
        stdout = out.read()
    return (t1 - t0) * 1000.0, stdout, code


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def own_peak_rss_once(
    argv: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,),
    interval: float = 0.0005,
) -> tuple[float, float]:
    """Run argv once; (its own peak RSS in MiB, its ru_maxrss in MiB).

    For a program that starts and reaps children of its own (tend test starts the server it
    probes), ru_maxrss cannot say what the program itself used: Linux fills wait4()'s rusage
    with RUSAGE_BOTH, so ru_maxrss is the largest of the process and every descendant it
    reaped.  The first figure is the process's own high-water mark instead: VmHWM from
    /proc/PID/status, polled every `interval` seconds until the process exits (VmHWM only
    grows, and a new mm at execve starts it afresh, so Python's size does not leak in).  It
    can miss growth in the last poll interval before exit.  Linux only; the second figure is
    the wait4 ru_maxrss of the same run, for comparison.
    """
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )
        except OSError as e:
            raise BenchError(f"cannot start {argv[0]}: {e}") from e
        hwm = 0
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            seen = _vm_hwm_kib(proc.pid)
            if seen is not None and seen > hwm:
                hwm = seen
            time.sleep(interval)
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code
        if code not in ok:
            raise _failure(argv, code, err)
    return hwm / 1024, maxrss_to_mib(rusage.ru_maxrss)


def wall_rss_json(argv: list[str], w: list[float], r: list[float]) -> dict:
    """The JSON figures of one command: wall times (ms) and peak RSS (MiB)."""
    return {
        "command": argv,
        "runs": len(w),
        "wall_ms": {
            "median": statistics.median(w),
            "min": min(w),
            "max": max(w),
            "mean": statistics.fmean(w),
            "samples": w,
        },
        "peak_rss_mib": {
            "median": statistics.median(r),
            "min": min(r),
            "max": max(r),
            "samples": r,
        },
    }


# --------------------------------------------------------------------------
# tend


def default_tend_path() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    target_dir = Path(target) if target else REPO / "target"
    if not target_dir.is_absolute():
        target_dir = REPO / target_dir
    return target_dir / "release" / "tend"


def build_tend() -> Path:
    cargo = shutil.which("cargo")
    if cargo is None:
        raise BenchError("cargo not found on PATH (use --tend PATH or --no-build)")
    log("building: cargo build --release --bin tend")
    proc = subprocess.run(
        [cargo, "build", "--release", "--bin", "tend"], cwd=REPO, stdout=sys.stderr
    )
    if proc.returncode != 0:
        raise BenchError(f"cargo build --release failed (status {proc.returncode})")
    return default_tend_path()


def resolve_tend(args: argparse.Namespace) -> Path:
    """The tend binary to time, from --tend / --no-build (building it otherwise)."""
    if args.tend:
        tend = Path(args.tend)
        if not tend.exists():
            found = shutil.which(args.tend)
            if found is None:
                raise BenchError(f"--tend {args.tend}: not found")
            tend = Path(found)
        tend = tend.absolute()
    elif args.no_build:
        tend = default_tend_path()
    else:
        tend = build_tend()
    if not (tend.is_file() and os.access(tend, os.X_OK)):
        raise BenchError(f"tend binary not found or not executable: {tend}")
    return tend


def toml_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------
# Reporting and arguments


def host_info() -> dict:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def print_rows(rows: list[tuple[str, ...]]) -> None:
    """Print rows as a table: first column left-aligned, a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(widths[j]) for j, c in enumerate(row) if j]
        print("  ".join(cells))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def positive(s: str) -> int:
    n = int(s)
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n


# --------------------------------------------------------------------------
# npm installs the way the test harness makes them, and a loopback Verdaccio


def npm_install_once(folder: Path, dependencies: dict[str, str], overrides: dict[str, str],
                     marks: list[str]) -> None:
    """What tests/util/npm.rs install_once does: `npm install` of a private package.json in
    `folder`, under the same lock file (so a test run and a benchmark do not race), unless
    every path in `marks` (relative to `folder`) is already there."""
    import fcntl
    import json

    def done() -> bool:
        return all((folder / m).exists() for m in marks)

    if done():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BenchError("npm not found on PATH")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".install.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done():
            manifest = {
                "name": f"tend-test-{folder.name}",
                "private": True,
                "description": "Installed by tend's test harness (tests/util/npm.rs); safe to delete.",
                "dependencies": dependencies,
                "overrides": overrides,
            }
            (folder / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
            log(f"installing {', '.join(f'{k}@{v}' for k, v in dependencies.items())} into {folder}")
            proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-update-notifier"],
                                  cwd=folder, stdin=subprocess.DEVNULL, stdout=sys.stderr)
            if proc.returncode != 0:
                raise BenchError(f"npm install in {folder} failed (status {proc.returncode})")
    missing = [m for m in marks if not (folder / m).exists()]
    if missing:
        raise BenchError(f"npm install in {folder} left no {', '.join(missing)}")


VERDACCIO_VERSION = "5.33.0"  # tests/util/registry.rs pins the same (6.x needs Node 22)
VERDACCIO_DIR = REPO / ".local" / "verdaccio"


def ensure_verdaccio() -> Path:
    """The tests' Verdaccio (<repo>/.local/verdaccio), installed as tests/util/registry.rs
    does when missing; its entry script."""
    npm_install_once(VERDACCIO_DIR, {"verdaccio": VERDACCIO_VERSION}, {"node-fetch": "2.7.0"},
                     ["node_modules/.bin/verdaccio", "node_modules/verdaccio/bin/verdaccio"])
    return VERDACCIO_DIR / "node_modules" / "verdaccio" / "bin" / "verdaccio"


VERDACCIO_START_DEADLINE = 60.0  # s for GET /-/ping to answer with our nonce, per attempt
VERDACCIO_STOP_GRACE = 3.0  # s from SIGTERM to SIGKILL of its process group
VERDACCIO_PORT_ATTEMPTS = 5  # fresh ports tried when another process takes one first


def free_port() -> int:
    """A port free on 127.0.0.1 now (another process may take it before we listen on it)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None,
    body: bytes | None = None, timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request to 127.0.0.1:port; (status, headers by lower-case name, body)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body,
                     headers={"User-Agent": "tend-bench", **(headers or {})})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def verdaccio_config(d: Path, nonce: str, uplink: str | None) -> str:
    """The config.yaml of a Verdaccio kept in folder d.

    With an uplink: every package proxied from it (timeout 60s) and kept in storage, which
    revalidates with it after 60 minutes (maxage); log level warn.  Without one: the test
    harness's empty registry (tests/util/registry.rs: no uplinks, publish and unpublish for
    an authenticated user, offline publishing, max_body_size 50mb); log level http.  Both:
    `user_agent` is the nonce, which Verdaccio sends as X-Powered-By (so start() can tell the
    server answering on the port is ours) and, in brackets after `npm`, as the User-Agent of
    its requests to the uplink.
    """
    if uplink is None:
        htpasswd = "    max_users: 1000\n    algorithm: sha1\n"
        uplinks = "uplinks: {}\n"
        rule = "    access: $all\n    publish: $authenticated\n    unpublish: $authenticated\n"
        tail = "publish:\n  allow_offline: true\nmax_body_size: 50mb\n"
        level = "http"
    else:
        htpasswd = ""
        uplinks = f"uplinks:\n  upstream:\n    url: {uplink}\n    timeout: 60s\n    maxage: 60m\n"
        rule = "    access: $all\n    proxy: upstream\n"
        tail = ""
        level = "warn"
    return (
        f'storage: "{d}/storage"\n'
        f'plugins: "{d}/plugins"\n'
        f'user_agent: "{nonce}"\n'
        "web:\n  enable: false\n"
        f'auth:\n  htpasswd:\n    file: "{d}/htpasswd"\n{htpasswd}'
        f"{uplinks}"
        f'packages:\n  "@*/*":\n{rule}  "**":\n{rule}'
        "server:\n  keepAliveTimeout: 5\n"
        f"{tail}"
        f"log:\n  type: stdout\n  format: pretty\n  level: {level}\n"
    )


class Verdaccio:
    """A Verdaccio on a free 127.0.0.1 port, kept in a temp folder (config, storage, log).

    Verdaccio(uplink): its only uplink is `uplink`; every package is proxied and kept in its
    storage, so from the second request on it answers from loopback.  Verdaccio(): a fresh,
    empty registry with no uplinks, as the tests run it, which an authenticated user can
    publish to (benches/swap.py creates the user and publishes).  See verdaccio_config.

    The install is the test harness's (<repo>/.local/verdaccio, made the same way if missing).
    start() tries up to VERDACCIO_PORT_ATTEMPTS ports, each with a new nonce as `user_agent`:
    it is up when GET /-/ping answers 200 with that nonce as X-Powered-By, so a server that
    got the port first is not taken for ours; if Verdaccio exits with EADDRINUSE in its log,
    the port was taken between the pick and its listen, and the next attempt picks another.
    Any other failure stops it and raises BenchError with its log.  stop() (also on leaving
    a `with`) sends SIGTERM to its process group, SIGKILL after VERDACCIO_STOP_GRACE s, and
    deletes its folder.
    """

    def __init__(self, uplink: str | None = None) -> None:
        self.uplink = uplink
        self.proc: subprocess.Popen | None = None
        self.dir: Path | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log_text(self) -> str:
        """Its output so far (stdout and stderr), '' once stopped."""
        try:
            return (self.dir / "verdaccio.log").read_text(errors="replace") if self.dir else ""
        except OSError:
            return ""

    def start(self) -> None:
        main = ensure_verdaccio()
        node = shutil.which("node")
        if node is None:
            raise BenchError("node not found on PATH (Verdaccio needs it)")
        last_log = ""
        for _ in range(VERDACCIO_PORT_ATTEMPTS):
            self.dir = Path(tempfile.mkdtemp(prefix="tend-bench-verdaccio-"))
            nonce = f"verdaccio/{VERDACCIO_VERSION} tend-bench-{os.getpid()}-{time.time_ns()}"
            config = self.dir / "config.yaml"
            config.write_text(verdaccio_config(self.dir, nonce, self.uplink))
            self.port = free_port()
            with open(self.dir / "verdaccio.log", "wb") as out:
                self.proc = subprocess.Popen(
                    [node, str(main), "--config", str(config),
                     "--listen", f"127.0.0.1:{self.port}"],
                    cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, killed as a whole
                )
            why = self._wait_ready(nonce)
            if why is None:
                return
            text = self.log_text()
            self.stop()
            if why != "port taken":
                raise BenchError(f"verdaccio did not start on port {self.port}: {why}\n"
                                 f"--- verdaccio output ---\n{text}")
            last_log = text
        raise BenchError(f"verdaccio: no free port after {VERDACCIO_PORT_ATTEMPTS} attempts\n"
                         f"--- verdaccio output ---\n{last_log}")

    def _wait_ready(self, nonce: str) -> str | None:
        """None once it answers as ours; else why not ("port taken" if it lost the port)."""
        deadline = time.monotonic() + VERDACCIO_START_DEADLINE
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                return "port taken" if "EADDRINUSE" in self.log_text() else f"it exited with {code}"
            try:
                status, headers, _ = http_request(self.port, "GET", "/-/ping", timeout=5)
                if status == 200 and headers.get("x-powered-by") == nonce:
                    return None
                last = f"/-/ping answered {status} ({headers.get('x-powered-by')!r})"
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        return f"no answer to GET /-/ping within {VERDACCIO_START_DEADLINE:g} s ({last})"

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after a grace, reap; delete its folder."""
        proc, self.proc = self.proc, None
        if proc is not None:
            pgid = proc.pid  # start_new_session: the group is the leader's pid
            if proc.poll() is None:
                try:
                    os.killpg(pgid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=VERDACCIO_STOP_GRACE)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(pgid, signal.SIGKILL)  # whatever is left of the group
            except ProcessLookupError:
                pass
            proc.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> "Verdaccio":
        try:
            self.start()
        except BaseException:  # ^C mid-start too: __exit__ will not run
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
