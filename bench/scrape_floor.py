"""What one scrape of /metrics costs the exporter's process, against the floor of our server and of a bare socket.

Three processes serve the same host exporter page (published once, so nothing is rendered again), each scraped
over one kept-alive connection N times, SECONDS apart; CPU (user + system of the whole process) per scrape:

- ``ours``: the PrometheusSink and MetricsServer every exporter runs;
- ``floor``: the same server, its request answered with fixed bytes (no parsing, routing or answer building);
- ``raw``: a bare socket loop in a thread per connection, answering the same bytes.

    .venv/bin/python bench/scrape_floor.py [--scrapes 400] [--every 0.25]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import requests
from overhead_bench import cpu_seconds, free_port

PAGE = """
import sys, threading, time
from mltelemetry.exporters.host import HostCollector
from mltelemetry.sinks import PrometheusSink
from mltelemetry import httpserver
port, kind = int(sys.argv[1]), sys.argv[2]
sink = PrometheusSink("127.0.0.1", port if kind != "raw" else 0)
sink.publish_samples(HostCollector("sut").sample(time.time_ns()))
body = sink.metrics("application/openmetrics-text", "x").body
answer = f"HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: {len(body)}\\r\\n\\r\\n".encode() + body
"""
SERVER = PAGE + """
def fixed(self):
    end = self.rfile.peek(1).find(b"\\r\\n\\r\\n")
    self.rfile.read(end + 4)
    self.close_connection = False
    self.wfile.write(answer)
    self.wfile.flush()
    return True
if kind == "floor":
    httpserver._Handler._answer_buffered_request = fixed
if kind != "raw":
    threading.Event().wait()
import socket
server = socket.create_server(("127.0.0.1", port))
def serve(connection):
    while True:
        data = connection.recv(65536)
        if not data:
            return
        if data.endswith(b"\\r\\n\\r\\n"):
            connection.sendall(answer)
while True:
    threading.Thread(target=serve, args=(server.accept()[0],), daemon=True).start()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=400)
    parser.add_argument("--every", type=float, default=0.25, help="seconds between scrapes")
    args = parser.parse_args()
    ports = {kind: free_port() for kind in ("ours", "floor", "raw")}
    servers = {kind: subprocess.Popen([sys.executable, "-c", SERVER, str(port), kind]) for kind, port in ports.items()}
    try:
        time.sleep(5)
        sessions = {kind: requests.Session() for kind in ports}
        accept = {"Accept": "application/openmetrics-text; version=1.0.0"}

        def scrape_all() -> None:
            for kind, port in ports.items():
                sessions[kind].get(f"http://127.0.0.1:{port}/metrics", headers=accept, timeout=10).raise_for_status()

        scrape_all()
        before = {kind: cpu_seconds(p) for kind, p in servers.items()}
        for _ in range(args.scrapes):
            time.sleep(args.every)
            scrape_all()
        for kind, p in servers.items():
            print(f"{kind:6} {(cpu_seconds(p) - before[kind]) / args.scrapes * 1000:.3f} ms of CPU per scrape")
    finally:
        for p in servers.values():
            p.kill()


if __name__ == "__main__":
    main()
