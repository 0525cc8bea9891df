#!/usr/bin/env python3
"""Time a no-op `tend run` against a no-op ansible-playbook, side by side.

Usage (from anywhere; paths are resolved relative to this file's repository):

    python3 benches/noop_vs_ansible.py [--install-ansible]

    options:
      --install-ansible   create <repo>/.local/bench-venv (git-ignored) and
                          `pip install ansible-core` into it before measuring
      --runs N            measured runs of tend (default 30)
      --peer-runs N       measured runs of ansible-playbook (default 5)
      --no-build          do not run `cargo build --release` first
      --tend PATH         time this binary instead of target/release/tend
                          (implies --no-build; `--tend /bin/true` checks the harness)
      --ansible-playbook PATH
                          time this ansible-playbook instead of looking one up
      --json              print the figures as JSON instead of a table

What is timed:

    tend:  <tend> --site <tmp>/tend.toml -q run <repo>/benches/noop.rhai
           where <tmp>/tend.toml is the single line `root = "<tmp>/root"`
    peer:  ansible-playbook -i localhost, -c local <repo>/benches/noop-ansible.yml

ansible-playbook is taken from <repo>/.local/bench-venv if present, else from
PATH; if neither has it the peer is skipped (tend's figures are still reported).

Each command gets one warm-up run, then N timed runs and N memory runs:

  * wall time: time.perf_counter() around subprocess.Popen + os.wait4(pid, 0)
    of a direct child (no shell in between);
  * peak RSS: ru_maxrss (KiB on Linux) from os.wait4() on the measured process
    itself, so each run's rusage is its own.  Those runs are forked by a tiny
    /bin/sh with this script as their child subreaper, because a process
    forked straight from Python inherits Python's ~10-15 MiB high-water mark
    across exec (even /bin/true would read ~15 MiB).  The floor is ~1 MiB.
    On Linux ru_maxrss is the largest single process among the measured one
    and the descendants it reaped, not a sum over the tree (ansible forks
    workers; tend should not fork at all).

Children's stdout goes to /dev/null; their stderr is kept only to be shown
if a run fails (any non-zero exit is a hard error).

Targets checked (from the issue): tend median wall <= 5 ms, peak RSS <= 10 MiB.
Missing a target is reported as FAIL but the script still exits 0 - it is a
benchmark, not a test.  It exits non-zero only on errors (build failure, a run
exiting non-zero, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.dont_write_bytecode = True  # no benches/__pycache__ from the import below
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402  (helpers shared by the benchmarks)
    REPO,
    BenchError,
    host_info,
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

BENCHES = REPO / "benches"
TEND_PLAYBOOK = BENCHES / "noop.rhai"
PEER_PLAYBOOK = BENCHES / "noop-ansible.yml"
VENV = REPO / ".local" / "bench-venv"

TARGET_WALL_MS = 5.0
TARGET_RSS_MIB = 10.0


# --------------------------------------------------------------------------
# Measurement


@dataclass
class Sample:
    wall_ms: float
    rss_mib: float


@dataclass
class Result:
    name: str
    argv: list[str]
    samples: list[Sample] = field(default_factory=list)

    def walls(self) -> list[float]:
        return [s.wall_ms for s in self.samples]

    def rsses(self) -> list[float]:
        return [s.rss_mib for s in self.samples]

    @property
    def median_wall(self) -> float:
        return statistics.median(self.walls())

    @property
    def median_rss(self) -> float:
        return statistics.median(self.rsses())

    def as_json(self) -> dict:
        return wall_rss_json(self.argv, self.walls(), self.rsses())


def measure(name: str, argv: list[str], runs: int, cwd: Path, env: dict[str, str]) -> Result:
    log(f"{name}: warm-up + {runs} timed + {runs} memory runs: {' '.join(argv)}")
    time_once(argv, cwd, env)  # warm-up: page cache, first-run set-up, .pyc files
    walls = [time_once(argv, cwd, env) for _ in range(runs)]
    rsses = [rss_once(argv, cwd, env) for _ in range(runs)]
    result = Result(name=name, argv=argv)
    result.samples = [Sample(wall_ms=w, rss_mib=r) for w, r in zip(walls, rsses)]
    return result


# --------------------------------------------------------------------------
# ansible


def venv_bin(name: str) -> Path:
    sub = "Scripts" if os.name == "nt" else "bin"
    return VENV / sub / name


def install_ansible() -> None:
    py = venv_bin("python")
    if not py.exists():
        log(f"creating venv {VENV}")
        VENV.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-m", "venv", str(VENV)], stdout=sys.stderr)
        if proc.returncode != 0:
            raise BenchError(f"python -m venv {VENV} failed (status {proc.returncode})")
    log("installing ansible-core into the venv")
    proc = subprocess.run(
        [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", "ansible-core"],
        stdout=sys.stderr,
    )
    if proc.returncode != 0:
        raise BenchError(f"pip install ansible-core failed (status {proc.returncode})")


def find_ansible_playbook(override: str | None) -> Path | None:
    if override:
        p = Path(override)
        if not p.exists():
            found = shutil.which(override)
            if found is None:
                raise BenchError(f"--ansible-playbook {override}: not found")
            p = Path(found)
        return p.absolute()
    candidate = venv_bin("ansible-playbook")
    if candidate.exists():
        return candidate
    found = shutil.which("ansible-playbook")
    return Path(found) if found else None


def ansible_version(exe: Path, env: dict[str, str]) -> str | None:
    try:
        out = subprocess.run(
            [str(exe), "--version"], env=env, capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return first.strip() or None


def peer_env(base: dict[str, str], tmp: Path) -> dict[str, str]:
    env = dict(base)
    # Keep ansible's state (~/.ansible, local tmp) inside the throwaway dir.
    env["ANSIBLE_HOME"] = str(tmp / "ansible-home")
    env["ANSIBLE_LOCAL_TEMP"] = str(tmp / "ansible-home" / "tmp")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_LOCALHOST_WARNING"] = "False"
    env["ANSIBLE_INVENTORY_UNPARSED_WARNING"] = "False"
    # ansible refuses to start without a UTF-8 locale.
    if "UTF-8" not in (env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG") or "").upper():
        env["LC_ALL"] = "C.UTF-8"
    return env


# --------------------------------------------------------------------------
# Reporting


def print_table(tend: Result, peer: Result | None, peer_note: str | None) -> None:
    rows = [("command", "runs", "median ms", "min ms", "max ms", "median peak MiB")]
    for r in (tend, peer):
        if r is None:
            continue
        w = r.walls()
        rows.append(
            (
                r.name,
                str(len(r.samples)),
                f"{statistics.median(w):.2f}",
                f"{min(w):.2f}",
                f"{max(w):.2f}",
                f"{r.median_rss:.1f}",
            )
        )
    print_rows(rows)
    print()
    print(f"tend:  {' '.join(tend.argv)}")
    if peer is not None:
        print(f"peer:  {' '.join(peer.argv)}")
        print()
        print(f"peer/tend wall:  {peer.median_wall / tend.median_wall:.1f}x")
        print(f"peer/tend RSS:   {peer.median_rss / tend.median_rss:.1f}x")
    elif peer_note:
        print(f"peer:  skipped - {peer_note}")
    print()
    print("targets (issue):")
    print(
        f"  tend median wall <= {TARGET_WALL_MS:g} ms:  "
        f"{tend.median_wall:7.2f} ms   {verdict(tend.median_wall <= TARGET_WALL_MS)}"
    )
    print(
        f"  tend peak RSS    <= {TARGET_RSS_MIB:g} MiB: "
        f"{tend.median_rss:7.2f} MiB  {verdict(tend.median_rss <= TARGET_RSS_MIB)}"
    )


def as_json(
    tend: Result, peer: Result | None, peer_note: str | None, peer_version: str | None
) -> dict:
    out: dict = {
        "host": host_info(),
        "tend": tend.as_json(),
        "peer": None,
        "ratio": None,
        "targets": {
            "wall_ms": {
                "target": TARGET_WALL_MS,
                "measured_median": tend.median_wall,
                "pass": tend.median_wall <= TARGET_WALL_MS,
            },
            "peak_rss_mib": {
                "target": TARGET_RSS_MIB,
                "measured_median": tend.median_rss,
                "pass": tend.median_rss <= TARGET_RSS_MIB,
            },
        },
    }
    if peer is not None:
        out["peer"] = peer.as_json()
        out["peer"]["version"] = peer_version
        out["ratio"] = {
            "wall": peer.median_wall / tend.median_wall,
            "peak_rss": peer.median_rss / tend.median_rss,
        }
    else:
        out["peer_skipped"] = peer_note
    return out


# --------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="noop_vs_ansible.py",
        description="Time a no-op `tend run` against a no-op ansible-playbook.",
    )
    p.add_argument("--runs", type=positive, default=30, help="measured tend runs (default 30)")
    p.add_argument(
        "--peer-runs", type=positive, default=5, help="measured ansible runs (default 5)"
    )
    p.add_argument("--no-build", action="store_true", help="skip `cargo build --release`")
    p.add_argument(
        "--tend", metavar="PATH", help="tend binary to time (default target/release/tend)"
    )
    p.add_argument(
        "--install-ansible",
        action="store_true",
        help="pip install ansible-core into <repo>/.local/bench-venv first",
    )
    p.add_argument(
        "--ansible-playbook", metavar="PATH", help="ansible-playbook to time instead"
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not hasattr(os, "wait4"):
        raise BenchError("os.wait4 is not available on this platform (needs Linux/macOS)")
    for f in (TEND_PLAYBOOK, PEER_PLAYBOOK):
        if not f.is_file():
            raise BenchError(f"missing {f}")

    tend_bin = resolve_tend(args)

    if args.install_ansible:
        install_ansible()

    with tempfile.TemporaryDirectory(prefix="tend-bench-") as tmp_s:
        tmp = Path(tmp_s).resolve()
        site = tmp / "tend.toml"
        site.write_text(f"root = {toml_string(str(tmp / 'root'))}\n")
        env = dict(os.environ)

        tend_argv = [str(tend_bin), "--site", str(site), "-q", "run", str(TEND_PLAYBOOK)]
        tend = measure("tend run", tend_argv, args.runs, tmp, env)

        peer: Result | None = None
        peer_note: str | None = None
        peer_version: str | None = None
        ap = find_ansible_playbook(args.ansible_playbook)
        if ap is None:
            peer_note = (
                "ansible-playbook not found (neither in .local/bench-venv nor on PATH); "
                "install it with: python3 benches/noop_vs_ansible.py --install-ansible"
            )
            log(f"peer skipped: {peer_note}")
        else:
            penv = peer_env(env, tmp)
            peer_version = ansible_version(ap, penv)
            peer_argv = [str(ap), "-i", "localhost,", "-c", "local", str(PEER_PLAYBOOK)]
            name = "ansible-playbook"
            peer = measure(name, peer_argv, args.peer_runs, tmp, penv)

    if args.json:
        print(json.dumps(as_json(tend, peer, peer_note, peer_version), indent=2))
    else:
        print()
        print_table(tend, peer, peer_note)
        if peer_version:
            print(f"\npeer version: {peer_version}")
    return 0


if __name__ == "__main__":
    run_main(main)
