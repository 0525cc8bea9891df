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


class Verdaccio:
    """A Verdaccio on 127.0.0.1 whose only uplink is `upstream`: every package is proxied and
    kept in its storage (a temp folder), so from the second request on it answers from loopback.

    The install is the test harness's (<repo>/.local/verdaccio, made the same way if missing)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.url = ""
        self._dir: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        import socket
        import urllib.request

        main = ensure_verdaccio()
        node = shutil.which("node")
        if node is None:
            raise BenchError("node not found on PATH")
        self._dir = tempfile.TemporaryDirectory(prefix="tend-bench-verdaccio-")
        d = Path(self._dir.name)
        (d / "config.yaml").write_text(
            f'storage: "{d}/storage"\n'
            f'plugins: "{d}/plugins"\n'
            "web:\n  enable: false\n"
            f'auth:\n  htpasswd:\n    file: "{d}/htpasswd"\n'
            f"uplinks:\n  upstream:\n    url: {self.upstream}\n    timeout: 60s\n    maxage: 60m\n"
            "packages:\n"
            '  "@*/*":\n    access: $all\n    proxy: upstream\n'
            '  "**":\n    access: $all\n    proxy: upstream\n'
            "server:\n  keepAliveTimeout: 5\n"
            "log:\n  type: stdout\n  format: pretty\n  level: warn\n"
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        log_file = open(d / "verdaccio.log", "wb")
        self._proc = subprocess.Popen(
            [node, str(main), "--config", str(d / "config.yaml"),
             "--listen", f"127.0.0.1:{port}"],
            cwd=d, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, process_group=0,
        )
        log_file.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "-/ping", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                text = (d / "verdaccio.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise BenchError(f"verdaccio did not start on port {port}:\n{text}")
            time.sleep(0.1)

    def __enter__(self) -> "Verdaccio":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, 15)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, 9)
                self._proc.wait()
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
