"""The deduping ingestion server the gateway forwards to, with switchable failure modes.

It takes WireBatch JSON (`{"gateway","batch_key","messages":[{"key","seq","device","topic",
"payload",...}]}`). A message whose idempotency `key` was seen before is a duplicate request
(dropped, only counted). Otherwise the payload `{"run","device","n"}` names a message id
(device, n); ids delivered under more than one key are real duplicates (the gateway stored a
message twice). Per-device order: a first delivery with n below that device's highest n so far
is an order violation (the driver never resends, so a correct gateway keeps order).

Modes: up; down (listening socket closed: connection refused; reopened on the same port);
hang (requests wait while hanging, at most 120 s); fail (answer 503 for a seeded fraction).
"""

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .gateway import free_port

HANG_MAX_S = 120.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Cloud:
    def __init__(self, run_id, seed=1, log=print):
        self.run_id = run_id
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/ingest"
        self.lock = threading.Lock()
        self.rng = random.Random(seed ^ 0xC10D)
        self.mode, self.fail_ratio = "up", 0.0
        self.keys = set()  # idempotency keys seen
        self.ids = {}  # (device, n) -> set of keys
        self.first_at = {}  # (device, n) -> monotonic time of first delivery
        self.max_n = {}  # device -> highest n delivered
        self.duplicate_requests = 0
        self.order_violations = 0
        self.foreign = 0  # messages of another run (or not our payload)
        self.requests = {"ok": 0, "failed_503": 0, "hung": 0, "dropped": 0}
        self._last = time.monotonic()
        self._server = None
        self._thread = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self):
        self._open()
        return self

    def _open(self):
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: "down" takes effect at once
            # Headers and body go out in two writes: with Nagle on, the second waits for the
            # peer's delayed ACK (40 ms per batch), which would cap the drain rate of any gateway.
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def do_POST(self):
                cloud._handle(self)

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _close(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def stop(self):
        with self.lock:
            self.mode = "up"
        self._close()

    def set_mode(self, mode, fail_ratio=0.5):
        """up | down | hang | fail."""
        assert mode in ("up", "down", "hang", "fail"), mode
        with self.lock:
            old, self.mode, self.fail_ratio = self.mode, mode, fail_ratio
        if mode == "down" and old != "down":
            self._close()
        elif mode != "down" and old == "down":
            self._open()
        self.log(f"cloud: {old} -> {mode}" + (f" ({fail_ratio:.0%} 503)" if mode == "fail" else ""))

    # --- requests ------------------------------------------------------------------------

    def _handle(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length)
        mode = self._wait_while_hanging()
        if mode == "down":
            with self.lock:
                self.requests["dropped"] += 1
            h.close_connection = True
            return  # no answer: the gateway sees a closed connection
        if mode == "fail":
            with self.lock:
                fail = self.rng.random() < self.fail_ratio
            if fail:
                with self.lock:
                    self.requests["failed_503"] += 1
                return self._reply(h, 503, b"chaos: failing\n")
        try:
            batch = json.loads(body)
            messages = batch["messages"]
        except (ValueError, KeyError, TypeError):
            return self._reply(h, 400, b"not a WireBatch\n")
        with self.lock:
            for m in messages:
                self._record(m)
            self.requests["ok"] += 1
        self._reply(h, 200, b"{}")

    def _wait_while_hanging(self):
        """Hold the request while the mode is hang (bounded); returns the mode after."""
        deadline = time.monotonic() + HANG_MAX_S
        hung = False
        while True:
            with self.lock:
                mode = self.mode
            if mode != "hang" or time.monotonic() > deadline:
                return mode
            if not hung:
                hung = True
                with self.lock:
                    self.requests["hung"] += 1
            time.sleep(0.1)

    @staticmethod
    def _reply(h, status, body):
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except OSError:
            pass  # the gateway gave up on this request (timeout)

    def _record(self, m):
        key = m.get("key")
        if key in self.keys:
            self.duplicate_requests += 1
            return
        self.keys.add(key)
        try:
            p = json.loads(m.get("payload") or "")
            run, device, n = p["run"], p["device"], int(p["n"])
        except (ValueError, KeyError, TypeError):
            self.foreign += 1
            return
        if run != self.run_id:
            self.foreign += 1
            return
        mid = (device, n)
        if mid in self.ids:
            self.ids[mid].add(key)
            return
        self.ids[mid] = {key}
        now = time.monotonic()
        self.first_at[mid] = now
        self._last = now
        if n < self.max_n.get(device, -1):
            self.order_violations += 1
        else:
            self.max_n[device] = n

    # --- queries -------------------------------------------------------------------------

    def delivered_ids(self):
        with self.lock:
            return set(self.ids)

    def duplicate_ids(self):
        with self.lock:
            return sorted(mid for mid, keys in self.ids.items() if len(keys) > 1)

    def last_delivery(self):
        """Monotonic time of the last first-delivery (or of the start)."""
        with self.lock:
            return self._last

    def delivered_between(self, t0, t1):
        """Unique ids first delivered in [t0, t1]."""
        with self.lock:
            return sum(1 for t in self.first_at.values() if t0 <= t <= t1)

    def stats(self):
        with self.lock:
            return {"duplicate_requests": self.duplicate_requests, "order_violations": self.order_violations,
                    "foreign": self.foreign, "requests": dict(self.requests)}


def _serve(conn, run_id, seed, sink):
    """The child side of RemoteCloud: one Cloud (or NatsCloud), driven by (method, args) calls
    over `conn`."""
    import sys

    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if sink == "nats":
        from .nats import NatsCloud

        cloud = NatsCloud(run_id, seed, log=log)
    elif sink == "mqtt":
        from .mqtt_cloud import MqttCloud

        cloud = MqttCloud(run_id, seed, log=log)
    else:
        cloud = Cloud(run_id, seed, log=log)
    cloud.start()
    conn.send(("ok", (cloud.port, cloud.url)))
    while True:
        try:
            name, args = conn.recv()
        except (EOFError, OSError):
            break
        try:
            conn.send(("ok", getattr(cloud, name)(*args)))
        except Exception as e:  # reported to the caller, which raises it
            conn.send(("err", f"{name}: {e!r}"))
        if name == "stop":
            break


class RemoteCloud:
    """The Cloud in a process of its own. In the script's process its request handling would
    share one GIL with the driver's device threads, and the drain rate measured would be
    Python's, not the gateway's. Same queries as Cloud; times are time.monotonic(), which is
    one clock for every process on Linux."""

    def __init__(self, run_id, seed=1, log=print, sink="http"):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, run_id, seed, sink), daemon=True)
        self.sink = sink
        self._lock = threading.Lock()
        self.log = log
        self.port = self.url = None

    def start(self):
        self._proc.start()
        if not self._conn.poll(30):
            raise RuntimeError("the cloud process did not start")
        _, (self.port, self.url) = self._conn.recv()
        return self

    def _call(self, name, *args):
        with self._lock:
            self._conn.send((name, args))
            if not self._conn.poll(180):
                raise RuntimeError(f"the cloud process did not answer {name}")
            status, result = self._conn.recv()
        if status == "err":
            raise RuntimeError(result)
        return result

    def set_mode(self, mode, fail_ratio=0.5):
        self._call("set_mode", mode, fail_ratio)
        self.log(f"cloud: -> {mode}")

    def delivered_ids(self):
        return self._call("delivered_ids")

    def duplicate_ids(self):
        return self._call("duplicate_ids")

    def last_delivery(self):
        return self._call("last_delivery")

    def delivered_between(self, t0, t1):
        return self._call("delivered_between", t0, t1)

    def stats(self):
        return self._call("stats")

    def stop(self):
        if self._proc.is_alive():
            try:
                self._call("stop")
            except (RuntimeError, OSError, EOFError):
                pass
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
