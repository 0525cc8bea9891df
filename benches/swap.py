#!/usr/bin/env python3
"""Time `tend swap`: the switch itself against the 1 ms target, and the whole swap around it.

Requirement (issue 6): "The switch itself (from the decision to the rename) takes under
1 ms; a whole swap's wall time is dominated by the verification probe; the benchmark prints
both."

Usage (from anywhere; paths are resolved relative to this file's repository):

    python3 benches/swap.py [--runs N] [--warmup N] [--test-runs N] [--no-build]
                            [--tend PATH] [--json]

    options:
      --runs N       timed swaps, alternating 1.0.0 -> 1.1.0 and back (default 20)
      --warmup N     untimed swaps before them (default 2)
      --test-runs N  timed `tend test srv --release 1.1.0` runs, for comparison (default 5)
      --no-build     do not run `cargo build --release` first
      --tend PATH    time this binary instead of target/release/tend (implies --no-build)
      --json         print the figures as JSON instead of a table

The registry: benchlib.Verdaccio() - a Verdaccio 5 from the install the tests use,
<repo>/.local/verdaccio (if it is missing, this script installs it there the way
tests/util/npm.rs does: verdaccio@5.33.0 with node-fetch overridden to 2.7.0), started on a
free loopback port (another if that one is taken first, the server answering checked to be
this one by a nonce) with the test harness's config (tests/util/registry.rs: own storage,
htpasswd auth, no uplinks, max_body_size 50mb), its whole process group stopped at the end.
tend-fixture-mcp (tests/fixtures/packages/) is published at 1.0.0 and 1.1.0 in-process, as
the harness's publish_direct does: a PUT of the packument with the gzipped tarball
(`package/` prefix, npm's fixed mtime) base64-encoded in `_attachments`, sha512 SRI
integrity and sha1 shasum, with the bearer token of a user created on the registry.

The site (a temp folder, removed afterwards):

    <tmp>/tend.toml   root = "<tmp>/root", registry = Verdaccio, [auth] one token (by its
                      sha256) with scopes stage, deploy, rollback
    <tmp>/token       the token, passed with --token-file
    <tmp>/.mcp.json   {"mcpServers": {"srv": {"command": "npx",
                                              "args": ["-y", "tend-fixture-mcp@1.0.0"]}}}

Setup: `tend adopt srv` (stages 1.0.0, makes it current, rewrites the entry to start
<root>/servers/srv/current/server.js), `tend stage srv 1.1.0`.  Then --warmup untimed and
--runs timed `tend --json swap srv V`, V alternating 1.1.0, 1.0.0, ...  Each is timed
(time.perf_counter() around Popen + os.wait4 of a direct child, stdout to a temp file read
afterwards) and its JSON checked: swapped, from and to as expected, and `swap.switch_us`
kept: tend's own Instant around the one Effect that renames a new `current` symlink over
the old (src/ops/deploy.rs), the "switch" of the target.

Where a swap's time goes, per run, from what tend wrote (no extra instrumentation):

    run        the run report (<root>/reports/<run id>.json, src/report.rs): duration_ms of
               the whole run and of its one call record, `swap`; the rest of the wall time is
               the process's start-up, site loading, lock and exit ("process")
    phases     the swap writes, in order (src/ops/deploy.rs): the health record of the target
               release (<root>/state/health/srv.json; a fresh health run, since the last one
               is from another run), the intent, the backup (<root>/backups/...tar.gz, its
               path from the swap JSON), the new `current` link (renamed over the old; a
               symlink's own mtime is when it was made), the `previous` link, then the
               verification probe (start the server from the client config entry, check its
               version and tool fingerprint) and the intent cleared.  Between the run's start
               and end (report `started`/`ended`), those files' mtimes split the run into
                 start -> health recorded    site checks, the tree-digest verification and
                                             the health run of the release
                 -> backup written           intent + tar.gz
                 -> current link made        fsync, the switch's start
                 -> previous link made
                 -> run end (verify probe)   the verification probe, intent cleared, end
               File times come from the kernel's coarse clock (a tick, 1-4 ms), and the
               report's to the millisecond, so each phase is good to a few ms.

`tend test srv --release 1.1.0` (the health run a swap repeats, as its own process) and
`tend verify srv 1.1.0` (the tree digest) are timed --test-runs times each, for comparison.

Target (PASS/FAIL): switch_us median and p95 < 1000.  The share of the swap taken by the
probes (health + verification) is printed with the ratio wall / switch.  Missing the target
still exits 0 - it is a benchmark, not a test.  It exits non-zero only on errors: a build
failure, Verdaccio or node missing or not starting, a tend command failing, output that does
not check out, bad arguments.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.dont_write_bytecode = True  # no benches/__pycache__ from the import below
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402  (helpers shared by the benchmarks)
    REPO,
    VERDACCIO_VERSION,
    BenchError,
    Verdaccio,
    host_info,
    http_request,
    env_without_tend,
    log,
    positive,
    print_rows,
    resolve_tend,
    run_main,
    toml_string,
    verdict,
)

FIXTURE = REPO / "tests" / "fixtures" / "packages" / "tend-fixture-mcp"
PACKAGE = "tend-fixture-mcp"
SERVER = "srv"
OLD, NEW = "1.0.0", "1.1.0"

TARGET_SWITCH_US = 1000.0

USER, PASSWORD = "tend", "tend-bench-password"


# --------------------------------------------------------------------------
# Publishing to the empty registry (tests/util/registry.rs, in Python)


def create_user(registry: Verdaccio) -> str:
    """create_user of tests/util/registry.rs: a user on the registry; its bearer token."""
    body = json.dumps({
        "_id": f"org.couchdb.user:{USER}", "name": USER, "password": PASSWORD,
        "email": "tend@example.invalid", "type": "user", "roles": [],
    }).encode()
    status, _, text = http_request(registry.port, "PUT", f"/-/user/org.couchdb.user:{USER}",
                                   {"Content-Type": "application/json"}, body)
    if status not in (200, 201):
        raise BenchError(f"verdaccio: create user: {status} {text[:300]!r}")
    token = json.loads(text).get("token")
    if not token:
        raise BenchError(f"verdaccio: no token in {text[:300]!r}")
    return token


def publish_fixture(registry: Verdaccio, token: str, src: Path, version: str,
                    tag: str = "latest") -> None:
    """publish_direct of tests/util/registry.rs: the packument npm publish PUTs."""
    manifest = json.loads((src / "package.json").read_text())
    manifest["version"] = version
    name = manifest["name"]
    tgz = pack(src, manifest)
    file = f"{name.rsplit('/', 1)[-1]}-{version}.tgz"
    manifest["_id"] = f"{name}@{version}"
    manifest["dist"] = {
        "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode(),
        "shasum": hashlib.sha1(tgz).hexdigest(),
        "tarball": f"{registry.url}{name}/-/{file}",
    }
    doc = {
        "_id": name,
        "name": name,
        "description": manifest.get("description", ""),
        "dist-tags": {tag: version},
        "versions": {version: manifest},
        "access": None,
        "_attachments": {file: {
            "content_type": "application/octet-stream",
            "data": base64.b64encode(tgz).decode(),
            "length": len(tgz),
        }},
    }
    status, _, text = http_request(
        registry.port, "PUT", "/" + name.replace("/", "%2f"),
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        json.dumps(doc).encode(),
    )
    if status not in (200, 201):
        raise BenchError(f"publish {name}@{version}: {status} {text[:300]!r}\n"
                         f"--- verdaccio output ---\n{registry.log_text()[-3000:]}")


def pack(src: Path, manifest: dict) -> bytes:
    """Every file of src as `package/<path>` (package.json from `manifest`), npm's mtime."""
    files = sorted(p for p in src.rglob("*") if p.is_file())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in files:
            rel = path.relative_to(src).as_posix()
            data = (json.dumps(manifest, indent=2) + "\n").encode() if rel == "package.json" \
                else path.read_bytes()
            info = tarfile.TarInfo(f"package/{rel}")
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.mtime = 499_162_500  # 1985-10-26T08:15:00Z, what npm pack uses
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


# --------------------------------------------------------------------------
# The site and tend


def write_site(tmp: Path, registry: str) -> tuple[Path, Path]:
    token = "tend_" + secrets.token_hex(16)
    token_file = tmp / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    digest = hashlib.sha256(token.encode()).hexdigest()
    site = tmp / "tend.toml"
    site.write_text(
        f"root = {toml_string(str(tmp / 'root'))}\n"
        f"registry = {toml_string(registry)}\n"
        "\n[auth]\n"
        f'tokens = [{{ name = "bench", sha256 = "{digest}", '
        'scopes = ["stage", "deploy", "rollback"] }]\n'
    )
    mcp = {"mcpServers": {SERVER: {"command": "npx", "args": ["-y", f"{PACKAGE}@{OLD}"]}}}
    (tmp / ".mcp.json").write_text(json.dumps(mcp, indent=2) + "\n")
    return site, token_file


def run_timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, bytes, bytes, int]:
    """Run argv once as our direct child, output to temp files; (wall ms, stdout, stderr, code).

    The span is Popen to os.wait4 of the child, as benchlib.time_once; the output is read
    after it.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err)
        except OSError as e:
            raise BenchError(f"cannot start {argv[0]}: {e}") from e
        _, status, _ = os.wait4(proc.pid, 0)
        t1 = time.perf_counter()
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code  # we reaped it; stop Popen from trying again
        out.seek(0)
        err.seek(0)
        return (t1 - t0) * 1000.0, out.read(), err.read(), code


def must(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, bytes]:
    ms, out, err, code = run_timed(argv, cwd, env)
    if code != 0:
        raise BenchError(
            f"status {code}: {' '.join(argv)}\n--- stdout ---\n{out.decode(errors='replace')}"
            f"--- stderr ---\n{err.decode(errors='replace').rstrip() or '(empty)'}\n--------------"
        )
    return ms, out


def parse_time(s: str) -> float:
    """An RFC 3339 time (tend writes ms precision, `Z`) as epoch seconds."""
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


@dataclass
class Swap:
    to: str
    wall_ms: float
    switch_us: int
    run_id: str = ""
    run_ms: float = 0.0            # report duration_ms
    call_ms: float = 0.0           # the swap call's duration_ms
    phases: dict[str, float] = field(default_factory=dict)  # from tend's writes, ms
    marks: dict[str, float | None] = field(default_factory=dict)


def new_reports(reports: Path, seen: set[str]) -> list[Path]:
    if not reports.is_dir():
        return []
    return sorted(p for p in reports.glob("*.json") if p.name not in seen)


def mtime_ms(path: Path) -> float | None:
    """lstat mtime of path (a symlink's own), epoch ms; None if it is not there."""
    try:
        return path.lstat().st_mtime_ns / 1e6
    except OSError:
        return None


PHASES = [
    "start -> health recorded",
    "-> backup written",
    "-> current link made",
    "-> previous link made",
    "-> run end (verify probe)",
]


def phases_of(report: dict, root: Path, backup: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Split the run by the times tend's own writes left (see the module doc); {} if they
    are missing or out of order.  Returns (phases ms, the raw marks as ms from run start)."""
    start = parse_time(report["started"]) * 1000.0
    end = parse_time(report["ended"]) * 1000.0
    marks = [
        mtime_ms(root / "state" / "health" / f"{SERVER}.json"),
        mtime_ms(backup),
        mtime_ms(root / "servers" / SERVER / "current"),
        mtime_ms(root / "servers" / SERVER / "previous"),
    ]
    raw = {name: (m - start if m is not None else None) for name, m in
           zip(["health", "backup", "current", "previous"], marks)}
    if any(m is None for m in marks):
        return {}, raw
    points = [start, *marks, end]
    # Coarse file clocks and the ms-rounded report times can put neighbours a tick out of
    # order; more than 5 ms out means the marks are not this run's.
    if any(b < a - 5.0 for a, b in zip(points, points[1:])):
        return {}, raw
    return {name: max(0.0, b - a) for name, a, b in zip(PHASES, points, points[1:])}, raw


def p95(values: list[float]) -> float:
    """The nearest-rank 95th percentile (as tend's own percentiles)."""
    s = sorted(values)
    k = max(1, -(-95 * len(s) // 100))  # ceil(0.95 n)
    return s[k - 1]


# --------------------------------------------------------------------------
# Main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="swap.py", description="Time `tend swap`: switch and whole swap.")
    p.add_argument("--runs", type=positive, default=20, help="timed swaps (default 20)")
    p.add_argument("--warmup", type=int, default=2, help="untimed swaps first (default 2)")
    p.add_argument("--test-runs", type=int, default=5,
                   help="timed `tend test srv --release 1.1.0` runs for comparison (default 5)")
    p.add_argument("--no-build", action="store_true", help="skip `cargo build --release`")
    p.add_argument("--tend", metavar="PATH",
                   help="tend binary to time (default target/release/tend; implies --no-build)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.warmup < 0 or args.test_runs < 0:
        p.error("--warmup and --test-runs must be >= 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not hasattr(os, "wait4"):
        raise BenchError("os.wait4 is not available on this platform (needs Linux/macOS)")
    if not FIXTURE.is_dir():
        raise BenchError(f"no fixture package at {FIXTURE}")
    tend_bin = resolve_tend(args)
    env = env_without_tend()

    registry = Verdaccio()  # empty, publishing allowed
    tmp = Path(tempfile.mkdtemp(prefix="tend-bench-swap-")).resolve()
    try:
        log("starting verdaccio")
        registry.start()
        token = create_user(registry)
        for v in (OLD, NEW):
            publish_fixture(registry, token, FIXTURE, v)
        log(f"registry {registry.url}: {PACKAGE} {OLD} and {NEW} published")

        site, token_file = write_site(tmp, registry.url)
        root = tmp / "root"
        reports = root / "reports"
        base = [str(tend_bin), "--site", str(site), "--token-file", str(token_file)]
        adopt_ms, out = must(base + ["adopt", SERVER], tmp, env)
        log(f"adopt ({adopt_ms:.0f} ms): {out.decode().strip()}")
        stage_ms, out = must(base + ["stage", SERVER, NEW], tmp, env)
        log(f"stage ({stage_ms:.0f} ms): {out.decode().strip().splitlines()[-1] if out.strip() else ''}")

        live = OLD
        swaps: list[Swap] = []
        seen = {p.name for p in new_reports(reports, set())}
        total = args.warmup + args.runs
        for i in range(total):
            to = NEW if live == OLD else OLD
            argv = base + ["--json", "swap", SERVER, to]
            ms, out = must(argv, tmp, env)
            try:
                doc = json.loads(out)
                s = doc["swap"]
            except (ValueError, KeyError, TypeError) as e:
                raise BenchError(f"tend swap's stdout is not the swap JSON ({e}): {out[:500]!r}") from e
            if not (s.get("swapped") is True and s.get("from") == live and s.get("to") == to
                    and isinstance(s.get("switch_us"), int)):
                raise BenchError(f"unexpected swap result (live {live}, to {to}): {json.dumps(s)}")
            live = to
            rec = Swap(to=to, wall_ms=ms, switch_us=s["switch_us"])
            fresh = new_reports(reports, seen)
            seen.update(p.name for p in fresh)
            if len(fresh) == 1:
                report = json.loads(fresh[0].read_text())
                rec.run_id = report.get("id", "")
                rec.run_ms = float(report.get("duration_ms") or 0.0)
                calls = [c for c in report.get("calls", []) if c.get("primitive") == "swap"]
                rec.call_ms = float(calls[0]["duration_ms"]) if calls else 0.0
                rec.phases, rec.marks = phases_of(report, root, Path(s.get("backup", "")))
            if i >= args.warmup:
                swaps.append(rec)
            log(f"{'warm-up' if i < args.warmup else 'swap'} {i + 1}/{total} -> {to}: "
                f"{ms:.1f} ms, switch {rec.switch_us} µs")

        # For comparison: the two checks a swap repeats before switching, alone.
        tests: list[float] = []
        verifies: list[float] = []
        test_argv = base + ["--json", "test", SERVER, "--release", NEW]
        verify_argv = base + ["verify", SERVER, NEW]
        for i in range(args.test_runs):
            ms, out, err, code = run_timed(test_argv, tmp, env)
            if code not in (0, 1):
                raise BenchError(f"tend test failed with status {code}: {err.decode(errors='replace')}")
            tests.append(ms)
            verifies.append(must(verify_argv, tmp, env)[0])
            log(f"comparison {i + 1}/{args.test_runs}: tend test {ms:.1f} ms (exit {code}), "
                f"tend verify {verifies[-1]:.1f} ms")
    finally:
        registry.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    sw = [float(s.switch_us) for s in swaps]
    walls = [s.wall_ms for s in swaps]
    sw_med, sw_p95, sw_max = statistics.median(sw), p95(sw), max(sw)
    wall_med = statistics.median(walls)
    ok = sw_med < TARGET_SWITCH_US and sw_p95 < TARGET_SWITCH_US
    have_report = all(s.run_id for s in swaps)
    timed = [s for s in swaps if s.phases]  # swaps whose marks were all there and in order
    process_med = statistics.median(s.wall_ms - s.run_ms for s in swaps) if have_report else None
    health_share = verify_share = None
    if timed:
        health_share = statistics.median(s.phases[PHASES[0]] / s.wall_ms for s in timed)
        verify_share = statistics.median(s.phases[PHASES[4]] / s.wall_ms for s in timed)
    probe_share = health_share + verify_share if timed else None
    ratio = wall_med * 1000.0 / sw_med if sw_med > 0 else float("inf")

    def stats(v: list[float]) -> dict:
        return {"median": statistics.median(v), "p95": p95(v), "min": min(v), "max": max(v), "samples": v}

    if args.json:
        print(json.dumps({
            "host": host_info() | {"cpus": os.cpu_count()},
            "tend": str(tend_bin),
            "runs": args.runs, "warmup": args.warmup,
            "switch_us": stats(sw),
            "wall_ms": stats(walls),
            "report": {
                "run_ms": stats([s.run_ms for s in swaps]) if have_report else None,
                "swap_call_ms": stats([s.call_ms for s in swaps]) if have_report else None,
                "process_outside_run_ms_median": process_med,
            },
            "phases_ms": {n: stats([s.phases[n] for s in timed]) for n in PHASES} if timed else None,
            "phases_timed_swaps": len(timed),
            "marks_ms_from_run_start": [s.marks for s in swaps],
            "share_of_wall_median": {
                "start_to_health_recorded": health_share,
                "verify_probe": verify_share,
                "both": probe_share,
            },
            "tend_test_ms": stats(tests) if tests else None,
            "tend_verify_ms": stats(verifies) if verifies else None,
            "wall_over_switch": ratio,
            "targets": {"switch_us": {"target": TARGET_SWITCH_US, "median": sw_med, "p95": sw_p95, "pass": ok}},
        }, indent=2))
        return 0

    def row(name: str, v: list[float], fmt: str = "{:.1f}") -> tuple[str, ...]:
        return (name, *(fmt.format(x) for x in (statistics.median(v), p95(v), min(v), max(v))))

    print()
    rows = [("figure", "median", "p95", "min", "max")]
    rows.append(row("switch (µs, swap.switch_us)", sw, "{:.0f}"))
    rows.append(row("whole swap, wall (ms)", walls))
    if have_report:
        rows.append(row("  run (report duration_ms)", [s.run_ms for s in swaps]))
        rows.append(row("  swap call (report)", [s.call_ms for s in swaps]))
    for n in PHASES if timed else []:
        rows.append(row(f"    {n}", [s.phases[n] for s in timed]))
    if tests:
        rows.append(row(f"tend test {SERVER} --release {NEW} (ms)", tests))
        rows.append(row(f"tend verify {SERVER} {NEW} (ms)", verifies))
    print_rows(rows)
    print()
    print(f"swaps:    {args.runs} timed after {args.warmup} warm-up, alternating {OLD} <-> {NEW}, "
          f"each `tend --json swap {SERVER} V` (wall: Popen to wait4)")
    print(f"registry: Verdaccio {VERDACCIO_VERSION} on loopback ({PACKAGE} {OLD} and {NEW})")
    if have_report:
        print(f"process:  {process_med:.1f} ms of the wall is outside the run (start-up, site, lock, exit)")
    if timed:
        print(f"phases:   from the run's start, the mtimes of what the swap writes in order (health "
              f"record, backup, `current`, `previous`) and the run's end; {len(timed)} of "
              f"{len(swaps)} swaps had them all in order; file clocks are coarse (a few ms)")
        print(f"probes:   start -> health recorded (site checks, tree digest, the fresh health run "
              f"of the release) {health_share * 100:.0f}% of the wall; verify probe (start the live "
              f"server from the client entry, check version and tools) {verify_share * 100:.0f}%; "
              f"together {probe_share * 100:.0f}%")
    else:
        print("phases:   the file marks were missing or out of order; see --json for them")
    print(f"ratio:    whole swap wall / switch = {ratio:,.0f}x")
    print()
    print("targets:")
    print(f"  switch < {TARGET_SWITCH_US:.0f} µs:  median {sw_med:.0f} µs, p95 {sw_p95:.0f} µs "
          f"(max {sw_max:.0f})   {verdict(ok)}")
    return 0


if __name__ == "__main__":
    run_main(main)
