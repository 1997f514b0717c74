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
import subprocess
import tempfile
import threading

from .engine import EngineCloud
from .gateway import free_port

STREAM, SUBJECTS, PREFIX = "CHAOS", "chaos.>", "chaos"


def nats_server_bin():
    for path in ("/usr/sbin/nats-server", shutil.which("nats-server") or ""):
        if path and os.path.exists(path):
            return path
    raise RuntimeError("nats-server is not installed (Debian package nats-server)")


class NatsCloud(EngineCloud):
    def __init__(self, run_id, seed=1, log=print):
        super().__init__(run_id, seed, log)
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = tempfile.mkdtemp(prefix="chaos-nats-")
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._run_broker()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._consume()), daemon=True)
        self._thread.start()
        return self

    def _run_broker(self):
        args = [nats_server_bin(), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.store]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_listening("nats-server")

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
            for m in msgs:
                self.record((m.headers or {}).get("Nats-Msg-Id"), m.data.decode("utf-8", "replace"))
            for m in msgs:
                try:
                    await m.ack()
                except Exception:
                    pass  # redelivered later: the book counts it as a duplicate request only
        await nc.close()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._kill_broker()
        shutil.rmtree(self.store, ignore_errors=True)
