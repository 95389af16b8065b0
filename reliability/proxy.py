#!/usr/bin/env python3
"""A small TCP round-robin proxy that routes only to backends whose /readyz answers 200.

It plays the part of kube-proxy in a rolling-restart test: a backend whose readiness fails is taken
out of rotation for new connections; connections already open stay where they are (the server
answers `Connection: close` while draining, so keep-alive clients come back through here and land
on a ready backend). It works at the TCP level on purpose, as kube-proxy does, so it cannot hide a
server's mistake by retrying a request.

    proxy.py --listen 127.0.0.1:PORT --backend 127.0.0.1:API_PORT:ADMIN_PORT [--backend ...]

It prints `listening PORT` once bound, and one JSON line of counters when it gets SIGTERM/SIGINT.
Listens on and connects to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"
CHUNK = 64 * 1024


@dataclass
class Backend:
    host: str
    api_port: int
    admin_port: int
    ready: bool = False
    connections: int = 0
    connect_failures: int = 0
    transitions: int = 0  # ready <-> not ready

    @property
    def name(self) -> str:
        return f"{self.host}:{self.api_port}"


class Proxy:
    def __init__(self, backends: list[Backend], poll_interval: float):
        self.backends = backends
        self.poll_interval = poll_interval
        self.next = 0
        self.no_backend = 0
        self.tasks: set[asyncio.Task] = set()  # open connections, ended quietly on stop

    def pick(self) -> Backend | None:
        """Round robin over the backends that were ready at the last poll."""
        n = len(self.backends)
        for i in range(n):
            b = self.backends[(self.next + i) % n]
            if b.ready:
                self.next = (self.next + i + 1) % n
                return b
        return None

    async def probe(self, b: Backend) -> bool:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(b.host, b.admin_port), self.poll_interval * 5)
        except (OSError, asyncio.TimeoutError):
            return False
        try:
            writer.write(f"GET /readyz HTTP/1.1\r\nHost: {b.host}\r\nConnection: close\r\n\r\n"
                         .encode())
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), self.poll_interval * 5)
            parts = status_line.split()
            return len(parts) >= 2 and parts[1] == b"200"
        except (OSError, asyncio.TimeoutError):
            return False
        finally:
            writer.close()

    async def poll(self) -> None:
        while True:
            results = await asyncio.gather(*(self.probe(b) for b in self.backends))
            for b, ready in zip(self.backends, results):
                if ready != b.ready:
                    b.transitions += 1
                b.ready = ready
            await asyncio.sleep(self.poll_interval)

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        b = self.pick()
        if b is None:
            self.no_backend += 1
            client_w.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection(b.host, b.api_port)
        except OSError:
            # Counted, not retried elsewhere: a failure here means readiness lied.
            b.connect_failures += 1
            client_w.close()
            return
        b.connections += 1
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
        except asyncio.CancelledError:
            pass
        finally:
            self.tasks.discard(task)
            up_w.close()
            client_w.close()

    def stats(self) -> dict:
        return {
            "no_backend": self.no_backend,
            "backends": {b.name: {"connections": b.connections,
                                  "connect_failures": b.connect_failures,
                                  "ready": b.ready, "transitions": b.transitions}
                         for b in self.backends},
        }


async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the half-close on; a reset closes the other side too."""
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except OSError:
        dst.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="127.0.0.1:PORT (0 picks a free port)")
    ap.add_argument("--backend", action="append", required=True, help="127.0.0.1:API:ADMIN")
    ap.add_argument("--poll-interval", type=float, default=0.1, help="seconds between /readyz polls")
    args = ap.parse_args()

    backends = []
    for spec in args.backend:
        host, api, admin = spec.split(":")
        if host != LOOPBACK:
            sys.exit("backends must be on 127.0.0.1")
        backends.append(Backend(host, int(api), int(admin)))
    host, port = args.listen.rsplit(":", 1)
    if host != LOOPBACK:
        sys.exit("--listen must be on 127.0.0.1")

    proxy = Proxy(backends, args.poll_interval)
    server = await asyncio.start_server(proxy.handle, host, int(port), backlog=1024)
    poller = asyncio.create_task(proxy.poll())
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    poller.cancel()
    server.close()
    for t in list(proxy.tasks):
        t.cancel()
    await asyncio.gather(poller, *proxy.tasks, return_exceptions=True)
    print(json.dumps(proxy.stats()), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
