#!/usr/bin/env python3
"""The floor of an MCP stdio server: a minimal client, importable and runnable on its own.

    python3 -S benches/mcp_floor.py NODE SERVER_JS

spawns `NODE SERVER_JS` (stdin and stdout piped, stderr to /dev/null), writes one
`initialize` request line, reads stdout lines until the answer to it, closes stdin and
waits for the server to exit.  It prints one JSON line: {"answer_ms": spawn to the
answer, "exit_ms": spawn to the exit}.  Exit status 1 (message on stderr) when the server
fails to start, closes stdout, prints a non-JSON line, or does not answer within 30 s.

benches/test_vs_inspector.py uses it two ways: imported (the client is the benchmark's own
long-lived process) and run as a fresh process for each measurement, the way tend runs.
The two do not give the same figure on every host: see that script's docstring.

Standard library only, and nothing imported that the measured span needs to load, so that a
fresh `python3 -S` pays its start-up before the clock starts.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

# What tend offers first (src/mcp/mod.rs SUPPORTED_VERSIONS[0]).
PROTOCOL_VERSION = "2025-11-25"
INITIALIZE = (
    json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "tend-bench-floor", "version": "0.0.0"},
            },
        }
    )
    + "\n"
).encode()


class FloorError(RuntimeError):
    """The server did not give the floor client its answer."""


def floor_once(node: str, server: str, cwd: str | None = None, env: dict[str, str] | None = None,
               timeout: float = 30.0) -> tuple[float, float]:
    """Spawn the server, send initialize, read its answer; (spawn->answer ms, spawn->exit ms)."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(
            [node, server], cwd=cwd, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
    except OSError as e:
        raise FloorError(f"cannot start {node}: {e}") from e
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(INITIALIZE)
        proc.stdin.flush()
        fd = proc.stdout.fileno()
        buf = b""
        answer = None
        deadline = t0 + timeout
        while answer is None:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise FloorError(f"no answer to initialize within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise FloorError("the server closed stdout before answering initialize")
            buf += chunk
            while b"\n" in buf and answer is None:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    raise FloorError(f"a non-JSON line on stdout: {line[:200]!r}") from None
                if isinstance(msg, dict) and msg.get("id") == 1:
                    answer = msg
        t1 = time.perf_counter()
        if not isinstance(answer.get("result"), dict) or "protocolVersion" not in answer["result"]:
            raise FloorError(f"initialize failed: {json.dumps(answer)[:300]}")
        proc.stdin.close()
        proc.stdout.close()
        _, status, _ = os.wait4(proc.pid, 0)
        t2 = time.perf_counter()
        proc.returncode = os.waitstatus_to_exitcode(status)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        raise
    return (t1 - t0) * 1000.0, (t2 - t0) * 1000.0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: mcp_floor.py NODE SERVER_JS", file=sys.stderr)
        return 2
    try:
        answer, exit_ = floor_once(argv[0], argv[1])
    except FloorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"answer_ms": answer, "exit_ms": exit_}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
