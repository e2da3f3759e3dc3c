"""Measures the memory an idle WebSocket connection costs a server process:
opens N connections (each answers one request, then stays idle) and compares
the server's VmRSS before and after.

    .venv/bin/python tests/compat/ws_memory.py ws://127.0.0.1:19000/ PID [N]
"""
import json
import resource
import sys
import time
import uuid

import websocket  # websocket-client


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    url, pid = sys.argv[1], int(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 100), hard))
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "ws-memory"}
    request = json.dumps({"action": "queue_list", "headers": headers, "body": {}})
    # Warm up: one connection and request first, so one-off allocations are not counted.
    warm = websocket.create_connection(url)
    warm.send(request)
    warm.recv()
    time.sleep(1)
    before = rss_kib(pid)
    sockets = []
    for _ in range(count):
        ws = websocket.create_connection(url)
        ws.send(request)
        ws.recv()
        sockets.append(ws)
    time.sleep(2)
    after = rss_kib(pid)
    per = (after - before) * 1024 / count
    print(f"{count} idle connections: RSS {before} KiB -> {after} KiB, {per / 1024:.1f} KiB each")
    for ws in sockets:
        ws.close()
    warm.close()


if __name__ == "__main__":
    main()
