#!/usr/bin/env python3
"""Time `tend stage` of a real MCP server against a plain `npm install`, side by side.

Requirement: `tend stage` of a real MCP server package adds at most 15% wall
time over a plain `npm install --omit=dev --ignore-scripts <pkg>@<version>` of
the same package into an empty folder, against the same registry.

Usage (from anywhere; paths are resolved relative to this file's repository):

    python3 benches/stage_vs_npm.py [--runs N] [--no-build] [--tend PATH]
                                    [--registry URL] [--loopback-proxy | --verdaccio]
                                    [--settle S] [--json]

    options:
      --runs N          timed runs of each side (default 5), after one warm-up each
      --settle S        seconds to pause, after a sync, before each timed run (default 2)
      --no-build        do not run `cargo build --release` first
      --tend PATH       time this binary instead of target/release/tend
                        (implies --no-build)
      --registry URL    the registry both sides use (default the public one,
                        https://registry.npmjs.org/)
      --loopback-proxy  put the forwarding proxy of benches/check_vs_ncu.py
                        (Python stdlib, HTTP on 127.0.0.1) in front of
                        --registry and point BOTH sides at it: for hosts whose
                        egress intercepts TLS with a private CA, which tend
                        (bundled Mozilla roots only) rejects.  Here the proxy
                        also rewrites the upstream's URL in JSON answers to its
                        own, so that the tarball URLs of packuments (which tend
                        downloads as they are) lead to the proxy too; npm would
                        rewrite registry.npmjs.org tarball hosts to --registry
                        by itself anyway (replace-registry-host).  Upstream
                        connections are pooled and kept alive across runs.
                        npm is then also timed straight against --registry
                        ("npm direct", same command) each round, to show what
                        the proxy changes.
      --verdaccio       run a Verdaccio 5.33.0 on 127.0.0.1 (the one the tests install
                        in <repo>/.local/verdaccio, installed there the same way if
                        missing) with --registry as its uplink, and point BOTH sides at
                        it.  The warm-up runs fill its storage, so the timed runs get
                        every packument and tarball from loopback: the figures show
                        what each side costs without the internet's variance (against
                        the public registry npm's own run varies by seconds from one
                        run to the next here, which swamps tend's share).
      --json            print the figures as JSON instead of a table

This script imports the measurement helpers and the proxy from
benches/check_vs_ncu.py, which must sit beside it.

The package: @modelcontextprotocol/server-memory at a fixed real release
(PACKAGE / VERSION below; one runtime dependency, @modelcontextprotocol/sdk,
which pulls in ~90 packages).

What is timed (time.perf_counter() around Popen + os.wait4 of a direct child;
stdout to /dev/null):

    tend:  TEND_TOKEN=<token> <tend> --site <tmp>/tend.toml -q --json stage memory <VERSION>
           <tmp>/tend.toml:  root = "<tmp>/root", registry = "<registry>",
                             [auth] tokens = [{ name = "bench", sha256 = "<sha256 of
                             the token>", scopes = ["stage"] }]
           <tmp>/.mcp.json:  "memory": {"command": "npx",
                             "args": ["-y", "@modelcontextprotocol/server-memory@<VERSION>"]}
           <root>/servers and <root>/staging are deleted before each run
           (outside the timed span), so every run really stages: packument,
           tarball download, sha512 check, extraction, `npm install --omit=dev
           --ignore-scripts` of the dependencies, tree digest, release.json,
           rename.  The packument cache (<root>/state/cache) is kept.
           tend finds `npm` through a wrapper put first on its PATH, which logs when
           npm started and ended: the figures split tend's wall time into "npm
           inside" (the `npm install` it runs in the release folder) and "tend's
           own" (everything else), which is what tend adds to npm's work.
    npm:   npm install --omit=dev --ignore-scripts --no-audit --no-fund
               --registry <registry> @modelcontextprotocol/server-memory@<VERSION>
           in a fresh empty temp folder each run (made before, removed after,
           outside the timed span).
    npm in folder:
           npm install --omit=dev --ignore-scripts --no-audit --no-fund
               --no-update-notifier --registry <registry>
           (the command tend runs) by hand, in a fresh copy of the package's folder
           as tend hands it to npm: the release's files from the warm-up without
           node_modules, package-lock.json and release.json, and package.json
           without devDependencies.  It tells tend's share (tend / npm in folder)
           from npm's own difference between the two ways of running it (npm in
           folder / npm).

npm's cache (~/.npm, or whatever the npm config says) is left as it is and is
shared: after the warm-up runs it is warm for both sides (tarballs are found
by integrity; packuments are revalidated or reused as npm decides), so the
figures compare staging with a warm npm cache, which is how a host that runs
tend from cron would see it.  tend's own download of the package's packument
and tarball does not go through npm's cache.

One warm-up run each (their output is checked: tend's JSON must say
`reused: false` for the right version, and its release must hold
node_modules; npm's folder must hold the package at that version; the number
of packages in each tree is printed), then N rounds of tend, npm and npm in folder
(and npm direct with --loopback-proxy), each of the three going first, second and
third in turn, so that none always runs right after another's cache revalidations.
Every arm is treated alike around its run: its tree (some 3,700 files) is deleted
right after it, and the next timed run starts after os.sync() and --settle seconds
(default 2).  On this host (ext4 on a virtual disk) npm's system time for the same
install ranges from 1.9 to 4.5 s with what the filesystem still has to do for the
writes and deletions before it; when tend's release was deleted just before tend's
own run (as an earlier version of this script did) tend's npm paid for it every
round.  Besides the ratio of the medians, the median of the
per-round ratios (tend / npm of the same round) is printed: it pairs runs made
seconds apart, which cancels drift in the registry's speed.

Target: tend median / npm median - 1 <= +15% (PASS/FAIL).  Missing it still
exits 0 - it is a benchmark, not a test.  It exits non-zero only on errors
(build failure, a run exiting non-zero, tend's JSON or either tree not what
staging should have produced, bad arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no benches/__pycache__ from the import below
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402  (helpers shared by the benchmarks)
    BenchError,
    Verdaccio,
    host_info,
    env_without_tend,
    log,
    positive,
    resolve_tend,
    run_main,
    time_once,
    toml_string,
    verdict,
)
from check_vs_ncu import (  # noqa: E402  (the sibling benchmark: its registry proxy)
    PUBLIC_REGISTRY,
    RegistryProxy,
    capture_ok,
    registry_note,
)

PACKAGE = "@modelcontextprotocol/server-memory"
VERSION = "2026.1.26"  # a real release (published 2026-02-04), not the newest
SERVER = "memory"
TARGET_OVERHEAD = 0.15


def write_site(tmp: Path, registry: str, token: str) -> Path:
    sha = hashlib.sha256(token.encode()).hexdigest()
    site = tmp / "tend.toml"
    site.write_text(
        f"root = {toml_string(str(tmp / 'root'))}\n"
        f"registry = {toml_string(registry)}\n"
        "\n"
        "[auth]\n"
        f'tokens = [{{ name = "bench", sha256 = "{sha}", scopes = ["stage"] }}]\n'
    )
    mcp = {"mcpServers": {SERVER: {"command": "npx", "args": ["-y", f"{PACKAGE}@{VERSION}"]}}}
    (tmp / ".mcp.json").write_text(json.dumps(mcp, indent=2) + "\n")
    return site


def count_packages(node_modules: Path) -> int:
    """Packages in a node_modules tree (node_modules/NAME, node_modules/@SCOPE/NAME), nested ones too."""
    if not node_modules.is_dir():
        return 0
    n = 0
    for entry in node_modules.iterdir():
        if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
            continue  # .bin, .package-lock.json
        dirs = sorted(entry.iterdir()) if entry.name.startswith("@") else [entry]
        for d in dirs:
            if d.is_dir() and not d.is_symlink() and (d / "package.json").is_file():
                n += 1 + count_packages(d / "node_modules")
    return n


def check_tend_json(stdout: bytes) -> dict:
    try:
        staged = json.loads(stdout)
    except ValueError as e:
        raise BenchError(f"tend's stdout is not JSON: {e}\n{stdout[:500]!r}") from e
    if not isinstance(staged, dict):
        raise BenchError(f"tend's JSON is not a staging result: {str(staged)[:500]}")
    if staged.get("version") != VERSION or staged.get("name") != SERVER:
        raise BenchError(f"tend staged {staged.get('name')}@{staged.get('version')}, "
                         f"expected {SERVER}@{VERSION}")
    if staged.get("reused") is not False:
        raise BenchError(f"tend did not really stage (reused: {staged.get('reused')}); "
                         "the release folder was not cleared?")
    path = Path(str(staged.get("path", "")))
    if not (path / "release.json").is_file():
        raise BenchError(f"tend's release {path} has no release.json")
    if not (path / "node_modules").is_dir():
        raise BenchError(f"tend's release {path} has no node_modules")
    return staged


def check_npm_tree(folder: Path) -> None:
    pj = folder / "node_modules" / PACKAGE / "package.json"
    try:
        got = json.loads(pj.read_text()).get("version")
    except (OSError, ValueError) as e:
        raise BenchError(f"npm's tree has no readable {pj}: {e}") from e
    if got != VERSION:
        raise BenchError(f"npm installed {PACKAGE}@{got}, expected {VERSION}")


def npm_version(env: dict[str, str]) -> str | None:
    try:
        out = subprocess.run(["npm", "--version"], env=env, capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def stats(samples: list[float]) -> dict:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "mean": statistics.fmean(samples),
        "samples": samples,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="stage_vs_npm.py",
        description="Time `tend stage` of a real MCP server against a plain npm install.",
    )
    p.add_argument("--runs", type=positive, default=5, help="timed runs of each side (default 5)")
    p.add_argument("--no-build", action="store_true", help="skip `cargo build --release`")
    p.add_argument("--settle", type=float, default=2.0, metavar="S",
                   help="seconds of pause after a sync before each timed run (default 2)")
    p.add_argument("--tend", metavar="PATH",
                   help="tend binary to time (default target/release/tend; implies --no-build)")
    p.add_argument("--registry", default=PUBLIC_REGISTRY, metavar="URL",
                   help=f"the registry both sides use (default {PUBLIC_REGISTRY})")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--loopback-proxy", action="store_true",
                      help="put a forwarding proxy on 127.0.0.1 in front of --registry for both sides")
    mode.add_argument("--verdaccio", action="store_true",
                      help="put a loopback Verdaccio (uplink --registry) in front for both sides")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not hasattr(os, "wait4"):
        raise BenchError("os.wait4 is not available on this platform (needs Linux/macOS)")
    npm = shutil.which("npm")
    if npm is None:
        raise BenchError("npm not found on PATH (tend's staging needs it as well)")
    upstream = args.registry if args.registry.endswith("/") else args.registry + "/"
    tend_bin = resolve_tend(args)

    token = secrets.token_urlsafe(32)
    base_env = env_without_tend()
    tend_env = dict(base_env, TEND_TOKEN=token)
    # tend runs `npm` from PATH: a wrapper first on its PATH records when that npm started
    # and ended, which splits tend's wall time into npm's part and tend's own.
    # (a TemporaryDirectory removes itself when collected or at exit, whatever happens here)
    span_tmp = tempfile.TemporaryDirectory(prefix="tend-bench-npm-span-")
    span_dir = Path(span_tmp.name)
    span_log = span_dir / "spans"
    (span_dir / "npm").write_text(
        "#!/bin/sh\n"
        "s=$(date +%s%N)\n"
        f"{shlex.quote(npm)} \"$@\"\n"
        "c=$?\n"
        f"echo \"$s $(date +%s%N)\" >> {shlex.quote(str(span_log))}\n"
        "exit $c\n"
    )
    (span_dir / "npm").chmod(0o755)
    tend_env["PATH"] = f"{span_dir}:{tend_env.get('PATH', '')}"

    def last_span_ms() -> float:
        start, end = span_log.read_text().split("\n")[-2].split()
        return (int(end) - int(start)) / 1e6
    npm_env = dict(base_env)
    version = npm_version(npm_env)

    with contextlib.ExitStack() as stack:
        tmp_s = stack.enter_context(tempfile.TemporaryDirectory(prefix="tend-bench-stage-"))
        stack.enter_context(span_tmp)
        proxy = (stack.enter_context(RegistryProxy(upstream, rewrite_tarballs=True))
                 if args.loopback_proxy else None)
        verdaccio = stack.enter_context(Verdaccio(upstream)) if args.verdaccio else None
        registry = proxy.url if proxy is not None else verdaccio.url if verdaccio else upstream
        tmp = Path(tmp_s).resolve()
        site = write_site(tmp, registry, token)
        root = tmp / "root"
        peers = tmp / "npm"
        peers.mkdir()

        tend_argv = [str(tend_bin), "--site", str(site), "-q", "--json", "stage", SERVER,
                     VERSION]
        npm_argv = [npm, "install", "--omit=dev", "--ignore-scripts", "--no-audit",
                    "--no-fund", "--registry", registry, f"{PACKAGE}@{VERSION}"]
        direct_argv = npm_argv[:-2] + [upstream, npm_argv[-1]] if proxy else None

        def clear_tend() -> None:
            for sub in ("servers", "staging"):
                shutil.rmtree(root / sub, ignore_errors=True)

        counter = iter(range(1_000_000))

        def fresh_folder() -> Path:
            d = peers / f"run{next(counter)}"
            d.mkdir()
            return d

        log(registry_note(registry, upstream, proxy, verdaccio))
        log("warm-up: tend, npm")
        clear_tend()
        tend_warm_ms, out, err = capture_ok("tend stage", tend_argv, tmp, tend_env, registry)
        staged = check_tend_json(out)
        tend_stderr = err.decode(errors="replace").rstrip()
        release = Path(staged["path"])
        tend_packages = count_packages(release / "node_modules")
        release_files = sum(1 for p in release.rglob("*") if p.is_file())
        def warm_up(argv: list[str], cwd: Path, what: str) -> float:
            return capture_ok(what, argv, cwd, npm_env)[0]

        d = fresh_folder()
        npm_warm_ms = warm_up(npm_argv, d, "npm install")
        check_npm_tree(d)
        # npm's tree also holds the package itself; tend's release is the package.
        npm_packages = count_packages(d / "node_modules") - 1
        shutil.rmtree(d)

        # The third arm: the very `npm install` tend runs, by hand, in a copy of the
        # package's folder as tend hands it to npm (its files, devDependencies left out).
        template = tmp / "package-folder"
        shutil.copytree(release, template,
                        ignore=shutil.ignore_patterns("node_modules", "package-lock.json",
                                                      "release.json"),
                        symlinks=True)
        manifest = json.loads((template / "package.json").read_text())
        manifest.pop("devDependencies", None)
        (template / "package.json").write_text(json.dumps(manifest, indent=2))
        folder_argv = [npm, "install", "--omit=dev", "--ignore-scripts", "--no-audit",
                       "--no-fund", "--no-update-notifier", "--registry", registry]

        def folder_copy() -> Path:
            d = peers / f"run{next(counter)}"
            shutil.copytree(template, d, symlinks=True)
            return d

        d = folder_copy()
        folder_warm_ms = warm_up(folder_argv, d, "npm install in the package folder")
        folder_packages = count_packages(d / "node_modules")
        shutil.rmtree(d)
        clear_tend()

        tend_ms: list[float] = []
        inside_ms: list[float] = []
        npm_ms: list[float] = []
        folder_ms: list[float] = []
        direct_ms: list[float] = []
        if direct_argv is not None:
            d = fresh_folder()
            warm_up(direct_argv, d, "npm install from the registry itself")
            shutil.rmtree(d)
        def settle() -> None:
            # Every arm deletes its tree (some 3,700 files) right after its run, and the
            # next starts after a sync and a pause: the filesystem's work on a deletion
            # goes on after unlink returns and slows whatever runs next, so it must not
            # fall on one arm more than on another.
            os.sync()
            time.sleep(args.settle)

        def run_tend() -> None:
            settle()
            tend_ms.append(time_once(tend_argv, tmp, tend_env))
            inside_ms.append(last_span_ms())
            if not (release / "release.json").is_file():
                raise BenchError(f"tend's run {len(tend_ms)} left no {release}/release.json")
            clear_tend()

        def run_npm() -> None:
            d = fresh_folder()
            settle()
            npm_ms.append(time_once(npm_argv, d, npm_env))
            check_npm_tree(d)
            shutil.rmtree(d)

        def run_folder() -> None:
            d = folder_copy()
            settle()
            folder_ms.append(time_once(folder_argv, d, npm_env))
            if count_packages(d / "node_modules") != folder_packages:
                raise BenchError(f"npm in the package folder installed a different tree in {d}")
            shutil.rmtree(d)

        arms = [run_tend, run_npm, run_folder]
        for i in range(args.runs):
            log(f"round {i + 1}/{args.runs}")
            # Each arm goes first, second and third in turn.
            for fn in arms[i % 3:] + arms[:i % 3]:
                fn()
            if direct_argv is not None:
                d = fresh_folder()
                settle()
                direct_ms.append(time_once(direct_argv, d, npm_env))
                check_npm_tree(d)
                shutil.rmtree(d)

    tend_med = statistics.median(tend_ms)
    npm_med = statistics.median(npm_ms)
    overhead = tend_med / npm_med - 1.0
    paired = statistics.median(t / n for t, n in zip(tend_ms, npm_ms)) - 1.0
    folder_med = statistics.median(folder_ms)
    tend_vs_folder = tend_med / folder_med - 1.0
    folder_vs_npm = folder_med / npm_med - 1.0
    ok = overhead <= TARGET_OVERHEAD

    if args.json:
        print(json.dumps({
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
            "package": {"name": PACKAGE, "version": VERSION},
            "npm_cache": "shared and warm for both sides (left as it is; warm-up runs first)",
            "runs": args.runs,
            "tend": {"command": tend_argv, "wall_ms": stats(tend_ms),
                     "npm_inside_ms": stats(inside_ms),
                     "outside_npm_ms": stats([t - i for t, i in zip(tend_ms, inside_ms)]),
                     "warmup_ms": tend_warm_ms, "staged": staged,
                     "release_files": release_files, "packages": tend_packages,
                     "warmup_stderr": tend_stderr.splitlines()[:20]},
            "npm": {"command": npm_argv, "version": version, "wall_ms": stats(npm_ms),
                    "warmup_ms": npm_warm_ms, "packages": npm_packages},
            "npm_in_folder": {"command": folder_argv, "wall_ms": stats(folder_ms),
                              "warmup_ms": folder_warm_ms, "packages": folder_packages},
            "overhead_over_npm_in_folder": tend_vs_folder,
            "npm_in_folder_over_npm": folder_vs_npm,
            "npm_direct": ({"command": direct_argv, "wall_ms": stats(direct_ms)}
                           if direct_argv else None),
            "overhead": overhead,
            "overhead_paired_median": paired,
            "target": {"max_overhead": TARGET_OVERHEAD, "pass": ok},
        }, indent=2))
        return 0

    def fmt(samples: list[float]) -> str:
        return (f"{statistics.median(samples):8.0f} ms  "
                f"(min {min(samples):.0f}, max {max(samples):.0f})")

    print()
    print(f"package:    {PACKAGE}@{VERSION}")
    print(f"registry:   {registry}" + (f"  (loopback Verdaccio 5.33.0, uplink {upstream}, storage "
                                        "filled by the warm-up runs)" if verdaccio else "")
          + (f"  (loopback proxy in front of {upstream}; "
                                        f"{proxy.requests} requests forwarded over "
                                        f"{proxy.upstream_connects} pooled upstream connections)"
                                        if proxy else ""))
    print("npm cache:  shared and warm for both sides (left as it is; one warm-up run each)")
    print(f"runs:       {args.runs} each, tend, npm and npm in folder in turn (who goes first rotates)"
          + (" / npm direct" if direct_argv else "") + "; median wall time")
    print()
    print(f"tend stage    {fmt(tend_ms)}   warm-up {tend_warm_ms:.0f} ms")
    print(f"  npm inside  {fmt(inside_ms)}   (the `npm install` tend runs in the release folder)")
    print(f"  tend's own  {fmt([t - i for t, i in zip(tend_ms, inside_ms)])}   "
          f"(download, verify, extract, digest, release.json, rename, report)")
    print(f"npm install   {fmt(npm_ms)}   warm-up {npm_warm_ms:.0f} ms"
          + (f"   (npm {version})" if version else ""))
    print(f"npm in folder {fmt(folder_ms)}   warm-up {folder_warm_ms:.0f} ms   (tend's npm command, "
          "by hand, in a copy of the package folder)")
    if direct_argv is not None:
        print(f"npm direct    {fmt(direct_ms)}   (the same against {upstream}, no proxy)")
    print()
    print(f"overhead (tend/npm - 1):  {overhead * 100:+.1f}%   (median of per-round ratios: "
          f"{paired * 100:+.1f}%)")
    print(f"tend / npm in folder - 1: {tend_vs_folder * 100:+.1f}%   (tend's share, against the same npm run)")
    print(f"npm in folder / npm - 1:  {folder_vs_npm * 100:+.1f}%   (npm's, from where it runs)")
    print(f"target <= +{TARGET_OVERHEAD * 100:.0f}%:           {verdict(ok)}")
    print()
    print(f"tend:  {' '.join(tend_argv)}")
    print(f"npm:   {' '.join(npm_argv)}")
    print(f"tend's release: {release_files} files, {tend_packages} packages in node_modules, "
          f"digest {staged.get('digest')}")
    print(f"npm's tree:     {npm_packages} packages besides {PACKAGE}")
    print(f"npm in folder:  {folder_packages} packages")
    if tend_packages != npm_packages:
        print(f"                (the two trees differ by {tend_packages - npm_packages:+d} packages)")
    if tend_stderr:
        print("tend stderr (warm-up):")
        for ln in tend_stderr.splitlines()[:10]:
            print(f"  | {ln}")
    if proxy is not None and proxy.errors:
        print(f"proxy errors ({len(proxy.errors)}): {proxy.errors[:5]}")
    return 0


if __name__ == "__main__":
    run_main(main)
