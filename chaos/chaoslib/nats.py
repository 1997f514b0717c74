"""NATS JetStream as the chaos scripts' cloud (`--sink nats`): a `nats-server -js` the script
starts (its store in a temp dir, so a restart keeps the stream) and a JetStream consumer that
reads the stream the gateway publishes into and records each message like the HTTP cloud does
(by `Nats-Msg-Id`, the message key; payload `{"run","device","n"}`).

Modes: up; down (nats-server killed with SIGKILL, started again on the same port and store);
hang (nats-server stopped with SIGSTOP: connections open, nothing answers). There is no "fail".
"""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from .cloud import Cloud
from .gateway import free_port

STREAM, SUBJECTS, PREFIX = "CHAOS", "chaos.>", "chaos"


def nats_server_bin():
    for path in ("/usr/sbin/nats-server", shutil.which("nats-server") or ""):
        if path and os.path.exists(path):
            return path
    raise RuntimeError("nats-server is not installed (Debian package nats-server)")


class NatsCloud:
    def __init__(self, run_id, seed=1, log=print):
        self.book = Cloud(run_id, seed, log)  # the recording (its HTTP server is never opened)
        self.log = log
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = tempfile.mkdtemp(prefix="chaos-nats-")
        self.proc = None
        self.mode = "up"
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._run_server()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._consume()), daemon=True)
        self._thread.start()
        return self

    def _run_server(self):
        args = [nats_server_bin(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.store]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not listen within 15 s")

    def set_mode(self, mode, fail_ratio=0.5):
        if mode == "fail":
            raise ValueError("--sink nats has no fail mode (down or hang)")
        if self.mode == "hang" and self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
        if mode == "down" and self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
        elif mode == "hang" and self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)
        elif mode == "up" and self.proc is None:
            self._run_server()
        self.mode = mode
        with self.book.lock:
            self.book.mode = mode

    async def _consume(self):
        import nats
        from nats.errors import TimeoutError as NatsTimeout

        async def quiet(*_):  # the client prints every failed reconnect otherwise
            pass

        nc = await nats.connect(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2, allow_reconnect=True,
                                error_cb=quiet, disconnected_cb=quiet, reconnected_cb=quiet, closed_cb=quiet)
        js = nc.jetstream(timeout=2)
        sub = None
        while not self._stop.is_set():
            try:
                if sub is None:
                    await js.stream_info(STREAM)  # the gateway's sink creates it at its first batch
                    sub = await js.pull_subscribe(SUBJECTS, durable="chaos", stream=STREAM)
                msgs = await sub.fetch(500, timeout=0.5)
            except NatsTimeout:
                continue
            except Exception:  # no stream yet, server down or stopped: try again
                await asyncio.sleep(0.2)
                continue
            with self.book.lock:
                for m in msgs:
                    key = (m.headers or {}).get("Nats-Msg-Id")
                    self.book._record({"key": key, "payload": m.data.decode("utf-8", "replace")})
                self.book.requests["ok"] += 1
            for m in msgs:
                try:
                    await m.ack()
                except Exception:
                    pass  # redelivered later: the book counts it as a duplicate request only
        await nc.close()

    # --- the queries of Cloud ----------------------------------------------------------------

    def delivered_ids(self):
        return self.book.delivered_ids()

    def duplicate_ids(self):
        return self.book.duplicate_ids()

    def last_delivery(self):
        return self.book.last_delivery()

    def delivered_between(self, t0, t1):
        return self.book.delivered_between(t0, t1)

    def stats(self):
        return self.book.stats()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.proc is not None:
            if self.mode == "hang":
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
        shutil.rmtree(self.store, ignore_errors=True)
