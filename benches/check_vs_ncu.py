#!/usr/bin/env python3
"""Time `tend check` of 17 packages against npm-check-updates (`ncu`), side by side.

Requirement: `tend check` of 17 packages against one registry is at least 7x
faster in wall time than `ncu` on a package.json naming the same 17 packages at
the same versions, against the same registry, run side by side; tend's peak
memory is at most 25 MiB.  Both figures are printed, with the ratio, and tend's
figures with a warm ETag cache as well.

Usage (from anywhere; paths are resolved relative to this file's repository):

    python3 benches/check_vs_ncu.py [--install-ncu] [--runs N] [--no-build]
                                    [--tend PATH] [--ncu PATH]
                                    [--registry URL] [--loopback-proxy | --verdaccio]
                                    [--json]

    options:
      --install-ncu     `npm install --no-audit --no-fund npm-check-updates` into
                        <repo>/.local/bench-ncu (git-ignored) before measuring
      --runs N          timed runs and memory runs of each command (default 5)
      --no-build        do not run `cargo build --release` first
      --tend PATH       time this binary instead of target/release/tend
                        (implies --no-build)
      --ncu PATH        time this ncu instead of <repo>/.local/bench-ncu's
      --registry URL    the registry both tools ask (default the public one,
                        https://registry.npmjs.org/)
      --loopback-proxy  put a small forwarding proxy (this script, Python
                        stdlib, HTTP on 127.0.0.1) in front of --registry and
                        point BOTH tools at it.  For hosts whose egress
                        intercepts TLS with a private CA: tend trusts only
                        its bundled Mozilla roots, not SSL_CERT_FILE or the
                        system store, so it cannot reach the registry there
                        directly.  The proxy passes requests and answers
                        through unchanged (ETag, If-None-Match and 304
                        included); it is the same registry for both tools,
                        plus the proxy's own cost, which is measured too:
                        ncu is then also timed straight against --registry
                        ("ncu direct") for comparison.
      --verdaccio       run a Verdaccio 5.33.0 on 127.0.0.1 (the one the tests install
                        in <repo>/.local/verdaccio, installed there the same way if
                        missing) with --registry as its uplink, and point BOTH tools at
                        it.  Verdaccio sends ETags and answers If-None-Match with 304,
                        which the public registry seen through this host's egress does
                        not (its answers carry no ETag), so this is how the warm figures
                        exercise the ETag path.  The warm-up runs fill its storage; it
                        revalidates with the uplink after 60 minutes (maxage), longer
                        than a run.
      --json            print the figures as JSON instead of a table

The site (a temp folder, removed afterwards):

    <tmp>/tend.toml     root = "<tmp>/root"
                        registry = "<registry>"
    <tmp>/.mcp.json     17 servers "s1".."s17":
                        {"command": "npx", "args": ["-y", "PKG@VERSION"]}
    <tmp>/ncu/package.json
                        "dependencies": the same 17 PKG: "VERSION" (exact pins)

What is timed (time.perf_counter() around Popen + os.wait4 of a direct child;
children's stdout to /dev/null):

    tend cold:  <tend> --site <tmp>/tend.toml -q --json check
                with <tmp>/root/state/cache deleted before each run (outside
                the timed span), so every packument is downloaded.
    tend warm:  the same command with the cache left by the cold run just
                before it, so each packument is revalidated with its ETag
                (If-None-Match; a 304 costs no download).  Whether the
                registry actually answered 304 is checked and printed: the
                warm-up's JSON says `source: "cache"` for each packument that
                came from a 304, and the cache holds one .etag file per
                packument the registry sent an ETag for.
    ncu:        <ncu> --packageFile <tmp>/ncu/package.json --registry <registry>
                --jsonUpgraded
                run in <tmp>/ncu.  ncu's own cache (--cache) is off by default
                and not enabled, and it writes nothing to npm's cache, so every
                ncu run downloads every packument: it has no warm state.
                ncu is a Node program: its figures include Node's start-up.

Every TEND_* variable (TEND_TOKEN, TEND_LOG, TEND_SITE, ...) is removed from
tend's environment.

Each command gets one warm-up run (its stdout is captured and checked: tend's
JSON must hold 17 results for the 17 packages at their pinned versions; ncu's
JSON of upgrades is compared with tend's `latest`), then N rounds of
(tend cold, tend warm, ncu) for wall time, then N such rounds for peak RSS, so
network drift hits all three alike.  Peak RSS is ru_maxrss from os.wait4() on
the measured process itself, forked by a tiny /bin/sh with this script as the
child subreaper so that Python's own size does not leak into the figure (see
benches/noop_vs_ansible.py, whose method this copies).

Targets (PASS/FAIL): ncu median / tend cold median >= 7 (the warm ratio is
printed with its own PASS/FAIL too), and tend's median peak RSS <= 25 MiB for
cold and warm runs alike (the largest single run is printed as well).  Missing
a target still exits 0 - it is a benchmark, not a test.  It exits non-zero only
on errors: a build failure, ncu missing, a run exiting non-zero (for tend a
registry it cannot reach: the error says so and suggests --loopback-proxy when
the cause is an unknown certificate issuer), tend's JSON not holding the 17
results, bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.dont_write_bytecode = True  # no benches/__pycache__ from the import below
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402  (helpers shared by the benchmarks)
    REPO,
    BenchError,
    Verdaccio,
    host_info,
    env_without_tend,
    log,
    positive,
    print_rows,
    resolve_tend,
    rss_once,
    run_main,
    time_once,
    toml_string,
    verdict,
    wall_rss_json,
)

NCU_DIR = REPO / ".local" / "bench-ncu"
PUBLIC_REGISTRY = "https://registry.npmjs.org/"

# 17 real packages, each pinned to an older real release (checked with
# `npm view NAME versions --json` when this was written, November 2026).
PACKAGES: list[tuple[str, str]] = [
    ("@modelcontextprotocol/server-memory", "2025.4.25"),
    ("@modelcontextprotocol/server-everything", "2025.3.19"),
    ("@modelcontextprotocol/server-filesystem", "2025.8.21"),
    ("@modelcontextprotocol/server-sequential-thinking", "2025.7.1"),
    ("@modelcontextprotocol/sdk", "1.10.0"),
    ("zod", "3.23.8"),
    ("express", "4.19.2"),
    ("commander", "11.1.0"),
    ("chalk", "4.1.2"),
    ("lodash", "4.17.20"),
    ("axios", "1.6.0"),
    ("ws", "8.14.2"),
    ("yargs", "17.7.2"),
    ("debug", "4.3.4"),
    ("semver", "7.5.4"),
    ("uuid", "9.0.1"),
    ("dotenv", "16.3.1"),
]
assert len(PACKAGES) == 17 and len({p for p, _ in PACKAGES}) == 17

TARGET_RATIO = 7.0
TARGET_RSS_MIB = 25.0


# --------------------------------------------------------------------------
# Measurement (time_once and rss_once are in benches/benchlib.py)


@dataclass
class Result:
    name: str
    argv: list[str]
    walls: list[float] = field(default_factory=list)
    rsses: list[float] = field(default_factory=list)

    @property
    def median_wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def median_rss(self) -> float:
        return statistics.median(self.rsses)

    def as_json(self) -> dict:
        return wall_rss_json(self.argv, self.walls, self.rsses)


def capture(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, bytes, bytes, int]:
    """Run argv once capturing its output; (wall ms, stdout, stderr, exit code)."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True
        )
    except OSError as e:
        raise BenchError(f"cannot start {argv[0]}: {e}") from e
    return (time.perf_counter() - t0) * 1000.0, proc.stdout, proc.stderr, proc.returncode


def capture_ok(what: str, argv: list[str], cwd: Path, env: dict[str, str],
               registry: str | None = None) -> tuple[float, bytes, bytes]:
    """capture(), and a BenchError quoting its stderr (with a hint about tend's TLS roots
    when a registry is named) when the command fails; (wall ms, stdout, stderr)."""
    ms, out, err, code = capture(argv, cwd, env)
    if code != 0:
        raise BenchError(
            f"{what} failed with status {code}: {' '.join(argv)}\n"
            f"--- stderr ---\n{err.decode(errors='replace').rstrip()}\n--------------"
            + (tend_failure_hint(err, registry) if registry is not None else "")
        )
    return ms, out, err


def registry_note(registry: str, upstream: str, proxy: object, verdaccio: object) -> str:
    """The log line naming the registry both tools use, and what stands in front of it."""
    return (f"registry: {registry}" + (f" (loopback proxy for {upstream})" if proxy else "")
            + (f" (loopback Verdaccio, uplink {upstream})" if verdaccio else ""))


# --------------------------------------------------------------------------
# The loopback proxy (--loopback-proxy)


_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
}


class RegistryProxy:
    """A forwarding HTTP proxy on 127.0.0.1 in front of one registry.

    Requests are forwarded with their headers (Accept, Accept-Encoding,
    If-None-Match, ...) to the upstream, and answers come back unchanged:
    status, ETag and body included.  Upstream connections verify TLS with
    Python's default trust (which honours SSL_CERT_FILE and the system store)
    and are kept alive in a pool shared by all client connections, so after
    the warm-up no run pays an upstream TLS handshake: a burst of fresh TLS
    connects can be throttled by an egress proxy (seen here: a second burst
    of 17 within ~0.5 s of the first waited 5 s to connect), which would be
    billed to whichever tool ran second.  With rewrite_tarballs, JSON
    answers (asked for uncompressed) have the upstream's base URL replaced by
    the proxy's, so that tarball URLs in packuments point at the proxy too.
    """

    def __init__(self, upstream: str, rewrite_tarballs: bool = False) -> None:
        u = urllib.parse.urlsplit(upstream)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise BenchError(f"--registry {upstream}: not an http(s) URL")
        self.upstream = upstream if upstream.endswith("/") else upstream + "/"
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.base_path = u.path if u.path.endswith("/") else u.path + "/"
        self.rewrite = rewrite_tarballs
        self.ssl_context = ssl.create_default_context()
        self.requests = 0
        self.upstream_connects = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, fmt: str, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                proxy._forward(self, head=False)

            def do_HEAD(self) -> None:
                proxy._forward(self, head=True)

        class Server(ThreadingHTTPServer):
            # socketserver's default listen backlog is 5: a burst of 12-17
            # concurrent connects (ncu, tend) overflows it, and a dropped SYN
            # is retried only after ~1 s, which would be billed to the tool.
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "RegistryProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self, fresh: bool) -> http.client.HTTPConnection:
        if not fresh:
            with self._lock:
                if self._idle:
                    return self._idle.pop()
        with self._lock:
            self.upstream_connects += 1
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, context=self.ssl_context, timeout=60
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def _give_back(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        if resp.will_close:
            conn.close()
            return
        with self._lock:
            self._idle.append(conn)

    def _forward(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = self.base_path + h.path.lstrip("/")
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
        if self.rewrite:
            headers = {k: v for k, v in headers.items() if k.lower() != "accept-encoding"}
            headers["Accept-Encoding"] = "identity"
        method = "HEAD" if head else "GET"
        resp = None
        for attempt in (1, 2):
            # A pooled connection may have been closed by the upstream while
            # idle; the second attempt uses a fresh one.
            conn = self._take(fresh=attempt == 2)
            try:
                conn.request(method, path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                self._give_back(conn, resp)
                break
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if attempt == 2:
                    with self._lock:
                        self.errors.append(f"{method} {path}: {e}")
                    try:
                        h.send_error(502, f"upstream: {e}")
                    except OSError:
                        pass
                    return
        assert resp is not None
        out_headers = [
            (k, v) for k, v in resp.getheaders()
            if k.lower() not in _HOP_BY_HOP and k.lower() not in ("date", "server")
        ]  # send_response() adds its own Date and Server
        ctype = (resp.getheader("content-type") or "").lower()
        if self.rewrite and resp.status == 200 and "json" in ctype and body:
            if (resp.getheader("content-encoding") or "identity").lower() == "gzip":
                import gzip

                body = gzip.decompress(body)
                out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-encoding"]
            upstream_base = f"{self.scheme}://{self.host}{self.base_path}".encode()
            body = body.replace(upstream_base, self.url.encode())
            if self.port in (80, 443):
                with_port = f"{self.scheme}://{self.host}:{self.port}{self.base_path}".encode()
                body = body.replace(with_port, self.url.encode())
        with self._lock:
            self.requests += 1
        try:
            h.send_response(resp.status, resp.reason)
            for k, v in out_headers:
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            if not head and resp.status not in (204, 304):
                h.wfile.write(body)
        except OSError:
            pass


# --------------------------------------------------------------------------
# tend


def write_site(tmp: Path, registry: str) -> Path:
    site = tmp / "tend.toml"
    site.write_text(
        f"root = {toml_string(str(tmp / 'root'))}\n"
        f"registry = {toml_string(registry)}\n"
    )
    servers = {
        f"s{i}": {"command": "npx", "args": ["-y", f"{pkg}@{ver}"]}
        for i, (pkg, ver) in enumerate(PACKAGES, start=1)
    }
    (tmp / ".mcp.json").write_text(json.dumps({"mcpServers": servers}, indent=2) + "\n")
    return site


def tend_failure_hint(stderr: bytes, registry: str) -> str:
    text = stderr.decode(errors="replace")
    if "UnknownIssuer" in text or "invalid peer certificate" in text:
        return (
            f"\nhint: tend rejected the TLS certificate of {registry}.  tend trusts only the "
            "Mozilla roots built into it (reqwest with rustls + webpki-roots), not "
            "SSL_CERT_FILE or the system store, so behind a TLS-intercepting egress proxy "
            "it cannot reach the registry directly.  Rerun with --loopback-proxy to put a "
            "local forwarding proxy (HTTP on 127.0.0.1) in front of the registry for both tools."
        )
    return ""


def check_tend_json(stdout: bytes) -> dict:
    """tend's JSON must be 17 check results naming our packages at their pins."""
    try:
        results = json.loads(stdout)
    except ValueError as e:
        raise BenchError(f"tend's stdout is not JSON: {e}\n{stdout[:500]!r}") from e
    if not isinstance(results, list):
        raise BenchError(f"tend's JSON is not a list of check results: {str(results)[:500]}")
    if len(results) != len(PACKAGES):
        raise BenchError(f"tend's JSON holds {len(results)} results, expected {len(PACKAGES)}")
    want = {f"s{i}": (pkg, ver) for i, (pkg, ver) in enumerate(PACKAGES, start=1)}
    seen: dict[str, dict] = {}
    for r in results:
        if not isinstance(r, dict) or r.get("name") not in want:
            raise BenchError(f"tend's JSON has an unexpected result: {str(r)[:300]}")
        pkg, ver = want[r["name"]]
        if r.get("package") != pkg or r.get("current") != ver:
            raise BenchError(
                f"tend's result for {r['name']} names {r.get('package')}@{r.get('current')}, "
                f"expected {pkg}@{ver}"
            )
        if not r.get("latest"):
            raise BenchError(f"tend's result for {r['name']} ({pkg}) has no `latest`")
        seen[pkg] = r
    if len(seen) != len(PACKAGES):
        raise BenchError("tend's JSON names some package twice")
    sources: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for r in results:
        sources[str(r.get("source"))] = sources.get(str(r.get("source")), 0) + 1
        kinds[str(r.get("kind"))] = kinds.get(str(r.get("kind")), 0) + 1
    return {
        "results": len(results),
        "update_available": sum(1 for r in results if r.get("update_available") is True),
        "sources": sources,
        "kinds": kinds,
        "by_package": {
            pkg: {k: r.get(k) for k in ("current", "latest", "candidate", "kind", "reason", "source")}
            for pkg, r in seen.items()
        },
    }


def cache_summary(cache: Path) -> dict:
    if not cache.is_dir():
        return {"exists": False, "json_files": 0, "etag_files": 0, "bytes": 0}
    files = [p for p in cache.rglob("*") if p.is_file()]
    return {
        "exists": True,
        "json_files": sum(1 for p in files if p.suffix == ".json"),
        "etag_files": sum(1 for p in files if p.suffix == ".etag"),
        "bytes": sum(p.stat().st_size for p in files),
    }


# --------------------------------------------------------------------------
# ncu


def install_ncu() -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise BenchError("npm not found on PATH (needed by --install-ncu)")
    NCU_DIR.mkdir(parents=True, exist_ok=True)
    log(f"installing npm-check-updates into {NCU_DIR}")
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "npm-check-updates"],
        cwd=NCU_DIR, stdout=sys.stderr,
    )
    if proc.returncode != 0:
        raise BenchError(f"npm install npm-check-updates failed (status {proc.returncode})")


def find_ncu(override: str | None) -> Path:
    if override:
        p = Path(override)
        if not p.exists():
            found = shutil.which(override)
            if found is None:
                raise BenchError(f"--ncu {override}: not found")
            p = Path(found)
        return p.absolute()
    p = NCU_DIR / "node_modules" / ".bin" / "ncu"
    if not p.exists():
        raise BenchError(
            f"ncu not found at {p}; install it with:\n"
            f"    python3 benches/check_vs_ncu.py --install-ncu\n"
            f"(runs `npm install --no-audit --no-fund npm-check-updates` in {NCU_DIR}), "
            "or pass --ncu PATH"
        )
    return p


def ncu_version(ncu: Path, env: dict[str, str]) -> str | None:
    try:
        out = subprocess.run(
            [str(ncu), "--version"], env=env, capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def write_package_json(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pj = folder / "package.json"
    pj.write_text(
        json.dumps(
            {
                "name": "tend-bench-ncu",
                "version": "0.0.0",
                "private": True,
                "dependencies": {pkg: ver for pkg, ver in PACKAGES},
            },
            indent=2,
        )
        + "\n"
    )
    return pj


def parse_ncu_json(stdout: bytes) -> dict[str, str]:
    text = stdout.decode(errors="replace")
    start = text.find("{")
    try:
        upgraded = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        upgraded = None
    if not isinstance(upgraded, dict):
        raise BenchError(f"ncu's stdout is not a JSON object of upgrades:\n{text[:500]}")
    return {str(k): str(v) for k, v in upgraded.items()}


# --------------------------------------------------------------------------
# Reporting


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="check_vs_ncu.py",
        description="Time `tend check` of 17 packages against npm-check-updates.",
    )
    p.add_argument("--runs", type=positive, default=5,
                   help="timed and memory runs of each command (default 5)")
    p.add_argument("--no-build", action="store_true", help="skip `cargo build --release`")
    p.add_argument("--tend", metavar="PATH",
                   help="tend binary to time (default target/release/tend; implies --no-build)")
    p.add_argument("--install-ncu", action="store_true",
                   help="npm install npm-check-updates into <repo>/.local/bench-ncu first")
    p.add_argument("--ncu", metavar="PATH", help="ncu to time instead")
    p.add_argument("--registry", default=PUBLIC_REGISTRY, metavar="URL",
                   help=f"the registry both tools ask (default {PUBLIC_REGISTRY})")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--loopback-proxy", action="store_true",
                      help="put a forwarding proxy on 127.0.0.1 in front of --registry for both tools")
    mode.add_argument("--verdaccio", action="store_true",
                      help="put a loopback Verdaccio (uplink --registry) in front for both tools")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not hasattr(os, "wait4"):
        raise BenchError("os.wait4 is not available on this platform (needs Linux/macOS)")
    upstream = args.registry if args.registry.endswith("/") else args.registry + "/"
    tend_bin = resolve_tend(args)
    if args.install_ncu:
        install_ncu()
    ncu_bin = find_ncu(args.ncu)

    base_env = dict(os.environ)
    tend_env = env_without_tend()
    version = ncu_version(ncu_bin, base_env)

    with contextlib.ExitStack() as stack:
        tmp_s = stack.enter_context(tempfile.TemporaryDirectory(prefix="tend-bench-check-"))
        proxy = stack.enter_context(RegistryProxy(upstream)) if args.loopback_proxy else None
        verdaccio = stack.enter_context(Verdaccio(upstream)) if args.verdaccio else None
        registry = proxy.url if proxy is not None else verdaccio.url if verdaccio else upstream
        tmp = Path(tmp_s).resolve()
        site = write_site(tmp, registry)
        cache = tmp / "root" / "state" / "cache"
        ncu_cwd = tmp / "ncu"
        pj = write_package_json(ncu_cwd)

        tend_argv = [str(tend_bin), "--site", str(site), "-q", "--json", "check"]
        ncu_argv = [str(ncu_bin), "--packageFile", str(pj), "--registry", registry,
                    "--jsonUpgraded"]
        ncu_direct_argv = [str(ncu_bin), "--packageFile", str(pj), "--registry", upstream,
                           "--jsonUpgraded"]

        def drop_cache() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        # Warm-ups, captured and checked.
        log(registry_note(registry, upstream, proxy, verdaccio))
        log("warm-up: tend cold, tend warm, ncu")
        drop_cache()
        _, out, err = capture_ok("tend check", tend_argv, tmp, tend_env, registry)
        cold_check = check_tend_json(out)
        cold_stderr = err.decode(errors="replace").rstrip()
        cache_after_cold = cache_summary(cache)
        _, out, err = capture_ok("tend check (warm)", tend_argv, tmp, tend_env, registry)
        warm_check = check_tend_json(out)
        warm_stderr = err.decode(errors="replace").rstrip()
        _, out, _ = capture_ok("ncu", ncu_argv, ncu_cwd, base_env)
        ncu_upgrades = parse_ncu_json(out)

        # Cross-check: ncu's target is `latest`, as is tend's `latest` field.
        disagreements = []
        for pkg, ver in PACKAGES:
            t_latest = cold_check["by_package"][pkg]["latest"]
            n_latest = ncu_upgrades.get(pkg)
            if n_latest is None and t_latest == ver:
                continue
            if n_latest != t_latest:
                disagreements.append({"package": pkg, "pinned": ver, "tend_latest": t_latest,
                                      "ncu_upgrade": n_latest})
        etag_304 = warm_check["sources"].get("cache", 0)

        tend_cold = Result("tend check (cold)", tend_argv)
        tend_warm = Result("tend check (warm)", tend_argv)
        ncu = Result("ncu", ncu_argv)
        ncu_direct = Result("ncu direct", ncu_direct_argv) if proxy is not None else None
        for i in range(args.runs):
            log(f"timed round {i + 1}/{args.runs}")
            drop_cache()
            tend_cold.walls.append(time_once(tend_argv, tmp, tend_env))
            tend_warm.walls.append(time_once(tend_argv, tmp, tend_env))
            ncu.walls.append(time_once(ncu_argv, ncu_cwd, base_env))
            if ncu_direct is not None:
                ncu_direct.walls.append(time_once(ncu_direct_argv, ncu_cwd, base_env))
        for i in range(args.runs):
            log(f"memory round {i + 1}/{args.runs}")
            drop_cache()
            tend_cold.rsses.append(rss_once(tend_argv, tmp, tend_env))
            tend_warm.rsses.append(rss_once(tend_argv, tmp, tend_env))
            ncu.rsses.append(rss_once(ncu_argv, ncu_cwd, base_env))
            if ncu_direct is not None:
                ncu_direct.rsses.append(rss_once(ncu_direct_argv, ncu_cwd, base_env))

    ratio_cold = ncu.median_wall / tend_cold.median_wall
    ratio_warm = ncu.median_wall / tend_warm.median_wall
    rss_ok = max(tend_cold.median_rss, tend_warm.median_rss) <= TARGET_RSS_MIB
    tend_rss_max = max(tend_cold.rsses + tend_warm.rsses)

    if args.json:
        out_doc: dict = {
            "host": host_info() | {"cpus": os.cpu_count()},
            "registry": {
                "upstream": upstream,
                "asked": registry,
                "loopback_proxy": proxy is not None,
                "verdaccio": verdaccio is not None,
                "proxy_requests": proxy.requests if proxy else None,
                "proxy_upstream_connects": proxy.upstream_connects if proxy else None,
                "proxy_errors": proxy.errors if proxy else None,
            },
            "packages": [{"package": p, "version": v} for p, v in PACKAGES],
            "runs": args.runs,
            "tend_cold": tend_cold.as_json(),
            "tend_warm": tend_warm.as_json(),
            "ncu": ncu.as_json() | {"version": version},
            "ncu_direct": ncu_direct.as_json() if ncu_direct else None,
            "ratio": {"ncu_over_tend_cold": ratio_cold, "ncu_over_tend_warm": ratio_warm},
            "etag": {
                "cache_after_cold": cache_after_cold,
                "warm_results_from_304": etag_304,
                "warm_sources": warm_check["sources"],
            },
            "checks": {
                "tend_results": cold_check["results"],
                "tend_update_available": cold_check["update_available"],
                "tend_kinds": cold_check["kinds"],
                "tend_by_package": cold_check["by_package"],
                "ncu_upgrades": ncu_upgrades,
                "latest_disagreements": disagreements,
                "tend_warmup_stderr": cold_stderr.splitlines()[:20],
                "tend_warm_warmup_stderr": warm_stderr.splitlines()[:20],
            },
            "targets": {
                "ratio_cold": {"target": TARGET_RATIO, "measured": ratio_cold,
                               "pass": ratio_cold >= TARGET_RATIO},
                "ratio_warm": {"target": TARGET_RATIO, "measured": ratio_warm,
                               "pass": ratio_warm >= TARGET_RATIO},
                "peak_rss_mib": {
                    "target": TARGET_RSS_MIB,
                    "measured_median_cold": tend_cold.median_rss,
                    "measured_median_warm": tend_warm.median_rss,
                    "max_single_run": tend_rss_max,
                    "pass": rss_ok,
                },
            },
        }
        print(json.dumps(out_doc, indent=2))
        return 0

    rows = [("command", "runs", "median ms", "min ms", "max ms", "median peak MiB", "max MiB")]
    for r in (tend_cold, tend_warm, ncu, ncu_direct):
        if r is None:
            continue
        rows.append((r.name, str(len(r.walls)), f"{r.median_wall:.1f}", f"{min(r.walls):.1f}",
                     f"{max(r.walls):.1f}", f"{r.median_rss:.1f}", f"{max(r.rsses):.1f}"))
    print()
    print_rows(rows)
    print()
    print(f"registry:  {registry}" + (f"  (loopback proxy in front of {upstream}; "
                                       f"{proxy.requests} requests forwarded over {proxy.upstream_connects} pooled "
                                       f"upstream connections)" if proxy else "")
          + (f"  (loopback Verdaccio 5.33.0, uplink {upstream}, storage filled by the warm-ups)"
             if verdaccio else ""))
    print(f"tend:      {' '.join(tend_argv)}")
    print(f"ncu:       {' '.join(ncu_argv)}" + (f"   (npm-check-updates {version})" if version else ""))
    if ncu_direct is not None:
        print(f"ncu direct: the same against {upstream}, bypassing the proxy; ncu via the "
              f"proxy minus direct: {ncu.median_wall - ncu_direct.median_wall:+.1f} ms "
              "(negative: the proxy's pooled upstream connections spare ncu its TLS handshakes)")
    print(f"rounds:    {args.runs} timed + {args.runs} memory, each (tend cold, tend warm, ncu"
          + (", ncu direct" if ncu_direct else "") + "); cold = state/cache deleted first")
    print()
    print(f"ncu / tend cold:  {ratio_cold:.2f}x")
    print(f"ncu / tend warm:  {ratio_warm:.2f}x")
    print()
    print("targets:")
    print(f"  ncu/tend (cold) >= {TARGET_RATIO:g}x:       {ratio_cold:6.2f}x   "
          f"{verdict(ratio_cold >= TARGET_RATIO)}")
    print(f"  ncu/tend (warm) >= {TARGET_RATIO:g}x:       {ratio_warm:6.2f}x   "
          f"{verdict(ratio_warm >= TARGET_RATIO)}")
    print(f"  tend peak RSS  <= {TARGET_RSS_MIB:g} MiB:     cold {tend_cold.median_rss:.1f}, "
          f"warm {tend_warm.median_rss:.1f} MiB (max run {tend_rss_max:.1f})   {verdict(rss_ok)}")
    print()
    print(f"tend JSON:  {cold_check['results']} results, {cold_check['update_available']} "
          f"with an update; kinds {cold_check['kinds']}")
    print(f"ETag cache: after a cold run {cache_after_cold['json_files']} packuments, "
          f"{cache_after_cold['etag_files']} .etag files, {cache_after_cold['bytes']:,} bytes; "
          f"warm run: {etag_304} of {warm_check['results']} from a 304 "
          f"(sources {warm_check['sources']})")
    if etag_304 == 0:
        print("            -> the registry sent no ETag (or no 304), so 'warm' re-downloaded "
              "everything: the ETag path was NOT exercised")
    print(f"ncu JSON:   {len(ncu_upgrades)} upgrades")
    if disagreements:
        print("tend `latest` vs ncu's upgrade differ for:")
        for d in disagreements:
            print(f"  {d['package']}@{d['pinned']}: tend latest {d['tend_latest']}, "
                  f"ncu {d['ncu_upgrade']}")
    else:
        print("            tend's `latest` matches ncu's upgrade for every package")
    for label, text in (("tend stderr (cold warm-up)", cold_stderr),
                        ("tend stderr (warm warm-up)", warm_stderr)):
        if text:
            print(f"{label}:")
            for ln in text.splitlines()[:10]:
                print(f"  | {ln}")
    if proxy is not None and proxy.errors:
        print(f"proxy errors ({len(proxy.errors)}): {proxy.errors[:5]}")
    return 0


if __name__ == "__main__":
    run_main(main)
