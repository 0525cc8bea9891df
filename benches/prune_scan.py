#!/usr/bin/env python3
"""Time `tend prune --dry-run` over a large root against `find -mtime +7` + `du -s`.

Requirement: scanning a root with 200,000 files across 2,000 releases and
computing the dry-run plan is at least as fast as `find ROOT -mtime +7` plus
`du -s ROOT` over the same tree, side by side.

Usage (from anywhere; paths are resolved relative to this file's repository):

    python3 benches/prune_scan.py [--runs N] [--rebuild] [--no-build]
                                  [--tend PATH] [--json]

    options:
      --runs N       timed runs of each side (default 5), after one warm-up each
      --rebuild      delete and rebuild the tree even if a complete one exists
      --no-build     do not run `cargo build --release` first
      --tend PATH    time this binary instead of target/release/tend
                     (implies --no-build)
      --json         print the figures as JSON instead of a table

The tree (built once, reused while complete; ~15-60 s to build, ~1.2 GB of
disk with 4 KiB blocks, ~96,000 directories):

    <repo>/.local/bench-prune/             (git-ignored)
      tend.toml                            root = "<abs>/root"
      tree.json                            what was built; marks it complete
      root/servers/srv00..srv19/
        current -> releases/1.0.99
        releases/1.0.0..1.0.99/            2,000 releases in all
          release.json                     {"package", "version", "installed_at"}
          package.json README.md LICENSE
          dist/file0..5.js
          node_modules/pkg00..pkg44/{index.js,package.json}
                                           100 files a release, 200,000 in all

File contents are a few hundred bytes.  Half the files get an mtime 8-60
days before the build, the other half 0-6.5 days (os.utime), so
`find -mtime +7` matches about 100,000 of them (more as the tree ages).
`installed_at` is spread over the 60 days before the build, newest for 1.0.99.
tend writes a run report and audit records under the root on every run, so
the root slowly gains a few files besides the 200,000; the count printed is
the one at measurement time.

What is timed (time.perf_counter() around subprocess.run, children's stdout
and stderr to /dev/null):

    tend:  <tend> --site <bench>/tend.toml -q --json prune --dry-run
           (without a token prune only plans: it takes the site lock, scans,
           plans, writes a run report and two audit records).  Every TEND_*
           variable is removed from its environment.
    peer:  find ROOT -mtime +7   then   du -s ROOT
           timed as one figure (find+du), and each on its own as well.

Each side gets one warm-up run, then the timed runs alternate tend, peer,
tend, peer ... so drift hits both alike.  The warm-up runs are where tend's
JSON (checked: dry run, ~2,000 `releases` items) and stderr, and find's match
count, are captured.  The page cache is NOT dropped (that needs root and hurts
the machine): both sides are measured warm, with the tree's inodes and
directories cached by the build, the completeness check and the warm-ups.

Target: tend median <= find+du median (PASS/FAIL); the ratio printed is
(find+du) / tend, so >= 1 passes.  Missing the target still exits 0 - it is a
benchmark, not a test.  It exits non-zero only on errors (build failure, a
run exiting non-zero, tend's JSON not what a dry-run plan should be).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.dont_write_bytecode = True  # no benches/__pycache__ from the import below
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402  (helpers shared by the benchmarks)
    REPO,
    BenchError,
    env_without_tend,
    log,
    positive,
    resolve_tend,
    run_main,
    toml_string,
    verdict,
)

BENCH = REPO / ".local" / "bench-prune"
ROOT = BENCH / "root"
SITE = BENCH / "tend.toml"
MARKER = BENCH / "tree.json"

SERVERS = 20
RELEASES_PER_SERVER = 100
FILES_PER_RELEASE = 100
TOTAL_FILES = SERVERS * RELEASES_PER_SERVER * FILES_PER_RELEASE
TREE_FORMAT = 1  # bump when the shape of the tree changes, to force a rebuild
NODE_PACKAGES = 45  # 2 files each
DIST_FILES = 6
TOP_FILES = ["release.json", "package.json", "README.md", "LICENSE"]
assert len(TOP_FILES) + DIST_FILES + 2 * NODE_PACKAGES == FILES_PER_RELEASE

DAY = 86_400.0
INSTALL_SPREAD_DAYS = 60
EXPECTED_RELEASE_ITEMS = SERVERS * RELEASES_PER_SERVER


# --------------------------------------------------------------------------
# The tree


def server_name(s: int) -> str:
    return f"srv{s:02d}"


def version_name(n: int) -> str:
    return f"1.0.{n}"


def release_files() -> list[str]:
    """Relative paths of the files of one release, release.json first."""
    files = list(TOP_FILES)
    files += [f"dist/file{i}.js" for i in range(DIST_FILES)]
    for k in range(NODE_PACKAGES):
        files += [f"node_modules/pkg{k:02d}/index.js", f"node_modules/pkg{k:02d}/package.json"]
    return files


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def filler(rng: random.Random, header: str) -> bytes:
    """A few hundred bytes of JS-ish text."""
    size = rng.randint(150, 600)
    line = "module.exports = function () { return 42; };\n"
    body = header + line * (size // len(line) + 1)
    return body[:size].encode()


def build_tree(dest: Path, now: float) -> None:
    """Writes the whole tree under dest (which must not exist)."""
    rng = random.Random(20261124)
    rel_files = release_files()
    subdirs = sorted({str(Path(f).parent) for f in rel_files if "/" in f})
    t0 = time.perf_counter()
    for s in range(SERVERS):
        server = server_name(s)
        sdir = dest / "servers" / server
        rdir = sdir / "releases"
        rdir.mkdir(parents=True)
        # Per-server jitter so servers do not all install at the same instant.
        jitter = rng.uniform(0, 6 * 3600)
        for n in range(RELEASES_PER_SERVER):
            version = version_name(n)
            vdir = rdir / version
            vdir.mkdir()
            for sub in subdirs:
                os.makedirs(vdir / sub)
            # 1.0.0 is the oldest (60 days), 1.0.99 the newest (~now).
            age = INSTALL_SPREAD_DAYS * DAY * (RELEASES_PER_SERVER - 1 - n) / (
                RELEASES_PER_SERVER - 1
            )
            installed = now - age - jitter
            manifest = {
                "package": f"@bench/{server}",
                "version": version,
                "installed_at": rfc3339(installed),
            }
            for i, rel in enumerate(rel_files):
                path = vdir / rel
                if i == 0:
                    data = (json.dumps(manifest, indent=2) + "\n").encode()
                else:
                    data = filler(rng, f"// {server} {version} {rel}\n")
                with open(path, "wb") as f:
                    f.write(data)
                # Half old (8-60 days), half recent (0-6.5 days).
                if rng.random() < 0.5:
                    mtime = now - rng.uniform(8, 60) * DAY
                else:
                    mtime = now - rng.uniform(0, 6.5) * DAY
                os.utime(path, (mtime, mtime))
        os.symlink(f"releases/{version_name(RELEASES_PER_SERVER - 1)}", sdir / "current")
        done = (s + 1) * RELEASES_PER_SERVER * FILES_PER_RELEASE
        log(f"  {done:,} / {TOTAL_FILES:,} files ({time.perf_counter() - t0:.0f} s)")


def count_tree(root: Path) -> tuple[int, int, int]:
    """(regular files, directories, symlinks) under root, not following links."""
    files = dirs = links = 0
    stack = [str(root)]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if e.is_symlink():
                    links += 1
                elif e.is_dir(follow_symlinks=False):
                    dirs += 1
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    files += 1
    return files, dirs, links


def expected_marker() -> dict:
    return {
        "format": TREE_FORMAT,
        "servers": SERVERS,
        "releases_per_server": RELEASES_PER_SERVER,
        "files_per_release": FILES_PER_RELEASE,
        "files": TOTAL_FILES,
    }


def tree_complete() -> bool:
    try:
        marker = json.loads(MARKER.read_text())
    except (OSError, ValueError):
        return False
    if any(marker.get(k) != v for k, v in expected_marker().items()):
        return False
    servers = ROOT / "servers"
    if not servers.is_dir():
        return False
    files, _, links = count_tree(servers)
    return files == TOTAL_FILES and links == SERVERS


def ensure_tree(rebuild: bool) -> dict:
    """Builds the tree unless a complete one is there; returns its marker."""
    BENCH.mkdir(parents=True, exist_ok=True)
    if not rebuild and tree_complete():
        log(f"reusing the tree in {ROOT}")
    else:
        log(f"building {TOTAL_FILES:,} files in {ROOT} ...")
        MARKER.unlink(missing_ok=True)
        partial = BENCH / "root.partial"
        for old in (ROOT, partial):
            if old.exists() or old.is_symlink():
                shutil.rmtree(old)
        now = time.time()
        build_tree(partial, now)
        partial.rename(ROOT)
        marker = expected_marker() | {"built_at": rfc3339(now)}
        MARKER.write_text(json.dumps(marker, indent=2) + "\n")
    return json.loads(MARKER.read_text())


def write_site() -> str:
    """Writes tend.toml beside the root (default limits); returns its text."""
    text = f"root = {toml_string(str(ROOT))}\n"
    SITE.write_text(text)
    return text


# --------------------------------------------------------------------------
# tend


def check_plan(stdout: bytes) -> dict:
    """Checks tend's JSON is a dry-run plan with ~2,000 releases; returns a summary."""
    try:
        report = json.loads(stdout)
    except ValueError as e:
        raise BenchError(f"tend's stdout is not JSON: {e}\n{stdout[:500]!r}") from e
    if not isinstance(report, dict) or not isinstance(report.get("items"), list):
        raise BenchError(f"tend's JSON has no `items` list: {str(report)[:500]}")
    if report.get("dry_run") is not True:
        raise BenchError("tend's report is not a dry run (is a token set?)")
    items = report["items"]
    by_category: dict[str, int] = {}
    by_action: dict[str, int] = {}
    for it in items:
        by_category[it.get("category", "?")] = by_category.get(it.get("category", "?"), 0) + 1
    releases = [it for it in items if it.get("category") == "releases"]
    for it in releases:
        by_action[it.get("action", "?")] = by_action.get(it.get("action", "?"), 0) + 1
    if len(releases) < EXPECTED_RELEASE_ITEMS:
        raise BenchError(
            f"tend's plan lists {len(releases)} releases, expected {EXPECTED_RELEASE_ITEMS}"
            f" (categories: {by_category})"
        )
    return {
        "items": len(items),
        "release_items": len(releases),
        "by_category": by_category,
        "release_actions": by_action,
        "release_bytes": sum(int(it.get("bytes", 0)) for it in releases),
        "errors": report.get("errors", []),
    }


# --------------------------------------------------------------------------
# Measurement


def run(argv: list[str], env: dict[str, str], capture: bool = False) -> tuple[float, bytes, bytes]:
    """Runs argv once; returns (wall ms, stdout, stderr); a non-zero exit is an error."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    except OSError as e:
        raise BenchError(f"cannot start {argv[0]}: {e}") from e
    ms = (time.perf_counter() - t0) * 1000.0
    if proc.returncode != 0:
        what = f"signal {-proc.returncode}" if proc.returncode < 0 else f"status {proc.returncode}"
        detail = ""
        if capture:
            err = proc.stderr.decode(errors="replace").rstrip().splitlines()
            shown = err if len(err) <= 40 else err[:20] + [f"... ({len(err) - 40} lines)"] + err[-20:]
            detail = "\n--- stderr ---\n" + "\n".join(shown) + "\n---"
        raise BenchError(f"run failed with {what}: {' '.join(argv)}{detail}")
    return ms, proc.stdout or b"", proc.stderr or b""


def stats(samples: list[float]) -> dict:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time `tend prune --dry-run` on a 200,000-file root against find -mtime +7 + du -s.",
    )
    p.add_argument("--runs", type=positive, default=5, help="timed runs of each side (default 5)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the tree even if complete")
    p.add_argument("--no-build", action="store_true", help="skip `cargo build --release`")
    p.add_argument("--tend", metavar="PATH", help="time this tend binary (implies --no-build)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for tool in ("find", "du"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found on PATH")
    find_bin, du_bin = shutil.which("find"), shutil.which("du")
    tend_bin = resolve_tend(args)
    marker = ensure_tree(args.rebuild)
    write_site()

    env = env_without_tend()
    tend_argv = [str(tend_bin), "--site", str(SITE), "-q", "--json", "prune", "--dry-run"]
    find_argv = [find_bin, str(ROOT), "-mtime", "+7"]
    du_argv = [du_bin, "-s", str(ROOT)]

    # Warm-ups: capture what the timed runs throw away.
    log("warm-up: tend, find, du")
    _, tend_out, tend_err = run(tend_argv, env, capture=True)
    plan = check_plan(tend_out)
    _, find_out, _ = run(find_argv, env, capture=True)
    find_matches = find_out.count(b"\n")
    _, du_out, _ = run(du_argv, env, capture=True)
    du_blocks = du_out.split()[0].decode() if du_out.split() else "?"
    files, dirs, links = count_tree(ROOT)

    tend_ms: list[float] = []
    find_ms: list[float] = []
    du_ms: list[float] = []
    peer_ms: list[float] = []
    for i in range(args.runs):
        log(f"run {i + 1}/{args.runs}")
        ms, _, _ = run(tend_argv, env)
        tend_ms.append(ms)
        t0 = time.perf_counter()
        f_ms, _, _ = run(find_argv, env)
        d_ms, _, _ = run(du_argv, env)
        peer_ms.append((time.perf_counter() - t0) * 1000.0)
        find_ms.append(f_ms)
        du_ms.append(d_ms)

    tend_med = statistics.median(tend_ms)
    peer_med = statistics.median(peer_ms)
    ratio = peer_med / tend_med if tend_med > 0 else float("inf")
    ok = tend_med <= peer_med
    err_lines = tend_err.decode(errors="replace").rstrip().splitlines()
    dry_lines = [ln for ln in err_lines if ln.startswith("dry-run: would ")]
    other_err = [ln for ln in err_lines if not ln.startswith("dry-run: would ")]
    stderr_summary = {
        "lines": len(err_lines),
        "dry_run_lines": len(dry_lines),
        "other_lines": other_err[:20],
    }

    if args.json:
        print(
            json.dumps(
                {
                    "root": str(ROOT),
                    "tree": {"files": files, "dirs": dirs, "symlinks": links, "built": marker},
                    "cache": "warm (page cache not dropped; warm-up runs first)",
                    "runs": args.runs,
                    "site": {"path": str(SITE)},
                    "tend": {"command": tend_argv, "wall_ms": stats(tend_ms), "plan": plan,
                             "warmup_stderr": stderr_summary},
                    "find": {"command": find_argv, "wall_ms": stats(find_ms),
                             "matches": find_matches},
                    "du": {"command": du_argv, "wall_ms": stats(du_ms), "kib": du_blocks},
                    "find_plus_du": {"wall_ms": stats(peer_ms)},
                    "ratio_peer_over_tend": ratio,
                    "target": "tend median <= find+du median",
                    "pass": ok,
                    "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
                },
                indent=2,
            )
        )
        return 0

    def fmt(samples: list[float]) -> str:
        return (
            f"{statistics.median(samples):9.1f} ms  "
            f"(min {min(samples):.1f}, max {max(samples):.1f})"
        )

    print()
    print(f"root:             {ROOT}")
    print(f"files in tree:    {files:,} regular files, {dirs:,} dirs, {links} symlinks")
    print(f"                  ({TOTAL_FILES:,} in {EXPECTED_RELEASE_ITEMS:,} releases, built "
          f"{marker.get('built_at', '?')}; the rest are tend's reports/audit/state)")
    print(f"site:             {SITE}")
    print("cache:            warm - page cache not dropped; one warm-up run each first")
    print(f"runs:             {args.runs} each, alternating tend / find+du; median wall time")
    print()
    print(f"tend prune --dry-run {fmt(tend_ms)}")
    print(f"find -mtime +7       {fmt(find_ms)}")
    print(f"du -s                {fmt(du_ms)}")
    print(f"find + du            {fmt(peer_ms)}")
    print()
    print(f"ratio (find+du)/tend: {ratio:.2f}x")
    print(f"tend <= find+du:      {verdict(ok)}")
    print()
    actions = ", ".join(f"{k} {v}" for k, v in sorted(plan["release_actions"].items()))
    cats = ", ".join(f"{k} {v}" for k, v in sorted(plan["by_category"].items()))
    print(f"tend plan:        {plan['items']:,} items ({cats})")
    print(f"                  releases: {plan['release_items']:,} ({actions}), "
          f"{plan['release_bytes']:,} bytes")
    if plan["errors"]:
        print(f"                  errors: {plan['errors']}")
    print(f"find matched:     {find_matches:,} paths older than 7 days")
    print(f"du -s:            {du_blocks} KiB")
    print(f"tend stderr:      {len(err_lines):,} lines on the warm-up run (despite -q), "
          f"{len(dry_lines):,} of them `dry-run: would ...`")
    for ln in other_err[:10]:
        print(f"                  | {ln}")
    return 0


if __name__ == "__main__":
    run_main(main)
