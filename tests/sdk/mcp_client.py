"""Drives rawprox with the official MCP Python SDK (streamable HTTP client +
ClientSession): initialize, list tools, add a rule, send traffic through it
over 127.0.0.1, stop and start logging, shut down; then checks the NDJSON.

Usage: python mcp_client.py RAWPROX_BINARY LOG_DIRECTORY
Run by tests/mcp.rs (test `official_python_sdk_drives_rawprox`).
"""

import asyncio
import base64
import glob
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.parse

from mcp import ClientSession
from mcp.shared.exceptions import MCPError
from mcp.client.streamable_http import streamable_http_client

BINARY, LOG_DIR = sys.argv[1], sys.argv[2]


def echo_server():
    """An echo server on 127.0.0.1; returns its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)

    def serve(conn):
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def round_trip(port, payload):
    """Sends payload through the proxy, half-closes, returns the echo."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := c.recv(65536):
            got += chunk
        return got


def decoded(lines, conn_id, sender):
    data = [l["data"] for l in lines if l.get("ConnID") == conn_id and "data" in l and l["from"] == sender]
    return urllib.parse.unquote_to_bytes("".join(data))


def text(result):
    return result.content[0].text


async def drive(endpoint, echo_port, rule_port):
    payloads = {}
    async with streamable_http_client(endpoint) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name == "rawprox", init
            assert init.protocol_version in ("2024-11-05", "2025-03-26", "2025-06-18"), init
            tools = await session.list_tools()
            names = sorted(t.name for t in tools.tools)
            assert names == ["add-port-rule", "list-connections", "read-connection", "remove-port-rule", "replay-connection", "shutdown", "start-logging", "stop-logging"], names
            for tool in tools.tools:
                assert tool.input_schema["type"] == "object", tool

            added = await session.call_tool(
                "add-port-rule", {"local_port": rule_port, "target_host": "127.0.0.1", "target_port": echo_port}
            )
            assert text(added) == f"Port rule added: {rule_port} -> 127.0.0.1:{echo_port}", text(added)

            payloads["stdout"] = bytes(range(256)) + b"logged to stdout %\r\n"
            assert round_trip(rule_port, payloads["stdout"]) == payloads["stdout"]

            stopped = await session.call_tool("stop-logging", {"directory": None})
            assert "stdout" in text(stopped), text(stopped)
            payloads["nowhere"] = b"logged nowhere"
            assert round_trip(rule_port, payloads["nowhere"]) == payloads["nowhere"]

            started = await session.call_tool("start-logging", {"directory": LOG_DIR})
            assert LOG_DIR in text(started), text(started)
            payloads["dir"] = os.urandom(50_000)
            assert round_trip(rule_port, payloads["dir"]) == payloads["dir"]

            # The reading tools: the connection logged to the directory, its
            # counts, and each side's exact bytes (base64), read in pieces.
            listed = await session.call_tool("list-connections", {})
            assert not listed.is_error, listed
            rows = listed.structured_content["connections"]
            assert len(rows) == 1, rows
            row = rows[0]
            assert row["bytes_client_to_target"] == row["bytes_target_to_client"] == len(payloads["dir"]), row
            assert row["listen_port"] == rule_port and row["closed_by"] == "client", row
            for side in ("client", "target"):
                got, offset = b"", 0
                while True:
                    part = await session.call_tool(
                        "read-connection",
                        {"conn_id": row["ConnID"], "side": side, "format": "base64", "offset": offset, "max_bytes": 16384},
                    )
                    assert not part.is_error, part
                    got += base64.b64decode(text(part).split("\n", 1)[1])
                    if not part.structured_content["truncated"]:
                        break
                    offset = part.structured_content["next_offset"]
                assert got == payloads["dir"], (side, len(got))
            # SPEC §10: the connection replayed to the echo server answers the same.
            replayed = await session.call_tool(
                "replay-connection", {"conn_id": row["ConnID"], "to": f"127.0.0.1:{echo_port}", "pace": "fast"}
            )
            assert not replayed.is_error, replayed
            assert replayed.structured_content["verdict"] == "same", replayed.structured_content
            assert replayed.structured_content["bytes_received"] == len(payloads["dir"]), replayed
            try:
                await session.call_tool("read-connection", {"conn_id": "zzzzzzzz"})
                raise AssertionError("an unknown ConnID was read")
            except MCPError as e:
                assert "unknown ConnID" in str(e), e

            bye = await session.call_tool("shutdown", {})
            assert "Shutting down" in text(bye), text(bye)
    return payloads


def main():
    echo_port, rule_port = echo_server(), free_port()
    proc = subprocess.Popen(
        [BINARY, "--mcp-port", "0", "--flush-millis", "100"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "mcp-ready", ready
        payloads = asyncio.run(asyncio.wait_for(drive(ready["endpoint"], echo_port, rule_port), 60))
        proc.wait(timeout=30)
        # Not communicate(): it would skip what readline() already buffered.
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (proc.returncode, err)

    stdout_lines = [ready] + [json.loads(l) for l in out.decode().splitlines()]
    events = [l["event"] for l in stdout_lines if "ConnID" not in l]
    # The implicit stdout destination is not announced (SPEC §7); its stop is.
    assert events == ["mcp-ready", "stop-logging", "start-logging", "stop-logging"], events
    stop = [l for l in stdout_lines if l.get("event") == "stop-logging"][0]
    assert stop == {"time": stop["time"], "event": "stop-logging", "directory": None}, stop
    start = [l for l in stdout_lines if l.get("event") == "start-logging"][0]
    assert start["directory"] == LOG_DIR, start
    opens = [l for l in stdout_lines if l.get("event") == "open"]
    assert len(opens) == 1, opens  # the second connection was logged nowhere
    first = opens[0]
    assert first["listen_port"] == rule_port and first["to"] == f"127.0.0.1:{echo_port}", first
    assert decoded(stdout_lines, first["ConnID"], first["from"]) == payloads["stdout"]
    assert decoded(stdout_lines, first["ConnID"], first["to"]) == payloads["stdout"]
    assert sum(1 for l in stdout_lines if l.get("event") == "close") == 1

    files = sorted(glob.glob(os.path.join(LOG_DIR, "*.ndjson")))
    assert len(files) >= 1, files
    dir_lines = [json.loads(l) for f in files for l in open(f)]
    assert dir_lines[0]["event"] == "start-logging" and dir_lines[0]["directory"] == LOG_DIR, dir_lines[0]
    assert dir_lines[-1]["event"] == "stop-logging" and dir_lines[-1]["directory"] == LOG_DIR, dir_lines[-1]
    dir_opens = [l for l in dir_lines if l.get("event") == "open"]
    assert len(dir_opens) == 1, dir_opens
    third = dir_opens[0]
    # ConnIDs stay consecutive: the unlogged connection still took its ID.
    assert third["ConnID"] != first["ConnID"]
    assert decoded(dir_lines, third["ConnID"], third["from"]) == payloads["dir"]
    assert decoded(dir_lines, third["ConnID"], third["to"]) == payloads["dir"]
    print("mcp sdk client: all checks passed")


if __name__ == "__main__":
    main()
