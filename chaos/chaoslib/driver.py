"""The load driver: device threads publishing QoS 1 (or 2) with exact ack bookkeeping.

Each device is one thread with its own paho client driven by `client.loop()` (no paho network
thread), publishing `{"run","device","n"}` to `devices/<client id>/chaos` with n rising from 0,
paced to its share of the rate, at most 20 in flight. A PUBACK (QoS 2: the PUBCOMP; v5: reason
< 0x80) makes (device, n) *acked*; a v5 reason >= 0x80 is *refused*. When the connection drops, everything in
flight is *unacked* and never resent: each connection gets a fresh paho client, so paho's own
resend queue is thrown away. Reconnects are tried every 50 ms until the driver stops.

`Churn` is the short-lived-client variant (connect, publish M, disconnect) with reconnect storms.
"""

import json
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MAX_INFLIGHT = 20
CONNECT_TIMEOUT_S = 5.0
RECONNECT_EVERY_S = 0.05


class Book:
    """Shared, locked bookkeeping of every device thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.published = 0
        self.published_ids = set()  # (device, n) ever handed to the socket
        self.acked = set()
        self.ack_times = []  # monotonic time of each ack
        self.latencies = []  # seconds, publish -> PUBACK
        self.unacked = 0
        self.refused = 0
        self.connects = 0
        self.connect_failures = 0
        self.connect_errors = {}  # reason -> count (refused, connack_timeout, connack_refused, ...)
        self.publish_started = None
        self.publish_stopped = None

    def acks_between(self, t0, t1):
        with self.lock:
            return sum(1 for t in self.ack_times if t0 <= t <= t1)


class _Conn:
    """One paho client for one connection; its callbacks fill the book."""

    def __init__(self, book, client_id, run_id, mqtt5, host, port, qos=1):
        self.book, self.client_id, self.run_id, self.qos = book, client_id, run_id, qos
        self.inflight = {}  # mid -> (n, t_sent)
        self.state = "connecting"  # connecting | up | down
        proto = mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311
        kw = {} if mqtt5 else {"clean_session": True}
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto, **kw)
        self.c.max_inflight_messages_set(MAX_INFLIGHT)
        self.c.max_queued_messages_set(0)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_publish = self._on_publish
        self.host, self.port, self.mqtt5 = host, port, mqtt5

    def open(self, deadline):
        """Connect and wait for CONNACK; True when up."""
        try:
            if self.mqtt5:
                self.c.connect(self.host, self.port, keepalive=30, clean_start=True)
            else:
                self.c.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            self.state = "down"
            self._failed(type(e).__name__)
            return False
        end = min(deadline, time.monotonic() + CONNECT_TIMEOUT_S)
        while self.state == "connecting" and time.monotonic() < end:
            rc = self.c.loop(timeout=0.1)  # returns as soon as the CONNACK is readable
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self.state = "lost"  # paho reports a loss before CONNACK only by the return code
                self.lost_rc = mqtt.error_string(rc)
                break
        if self.state != "up":
            self._failed({"connecting": "connack_timeout", "lost": f"lost_before_connack: {getattr(self, 'lost_rc', '')}"}
                         .get(self.state, "connack_refused"))
            self.close(abrupt=True)
            return False
        return True

    def _failed(self, reason):
        with self.book.lock:
            self.book.connect_errors[reason] = self.book.connect_errors.get(reason, 0) + 1

    def _on_connect(self, _c, _u, _flags, reason, _props):
        self.state = "up" if not reason.is_failure else "down"

    def _on_disconnect(self, _c, _u, _flags, _reason, _props):
        self.state = "down"

    def _on_publish(self, _c, _u, mid, reason, _props):
        entry = self.inflight.pop(mid, None)
        if entry is None:
            return
        n, t = entry
        now = time.monotonic()
        with self.book.lock:
            if reason is not None and reason.is_failure:
                self.book.refused += 1
            else:
                self.book.acked.add((self.client_id, n))
                self.book.ack_times.append(now)
                self.book.latencies.append(now - t)

    def publish(self, n):
        payload = json.dumps({"run": self.run_id, "device": self.client_id, "n": n})
        t = time.monotonic()
        info = self.c.publish(f"devices/{self.client_id}/chaos", payload, qos=self.qos)
        with self.book.lock:
            self.book.published += 1
            self.book.published_ids.add((self.client_id, n))
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            with self.book.lock:
                self.book.unacked += 1
            self.state = "down"
            return
        self.inflight[info.mid] = (n, t)

    def close(self, abrupt=False):
        """Disconnect (clean DISCONNECT, or just close the socket); in-flight ones become unacked."""
        try:
            if abrupt:
                sock = self.c.socket()
                if sock is not None:
                    sock.close()
            else:
                self.c.disconnect()
                self.c.loop(timeout=0.01)
        except OSError:
            pass
        try:
            # paho keeps a socketpair per client until the GC collects it; with hundreds of
            # clients the fd numbers pass 1023, select() fails and paho reports a lost connection.
            self.c._reset_sockets()
        except (OSError, AttributeError):
            pass
        with self.book.lock:
            self.book.unacked += len(self.inflight)
        self.inflight.clear()
        self.state = "down"


class _Results:
    """What Driver and Churn report, from their Book."""

    def acked_ids(self):
        with self.book.lock:
            return set(self.book.acked)

    def achieved_rate(self):
        b = self.book
        end = b.publish_stopped or time.monotonic()
        return b.published / max(1e-6, end - (b.publish_started or end))


class Driver(_Results):
    """D devices at a total rate until stop()."""

    def __init__(self, run_id, port, devices, rate, mqtt5=False, max_seconds=3600.0, log=print, qos=1):
        self.run_id, self.port, self.devices, self.rate, self.mqtt5 = run_id, port, devices, rate, mqtt5
        self.qos = qos
        self.max_seconds = max_seconds
        self.log = log
        self.book = Book()
        self._publishing = threading.Event()
        self._stop = threading.Event()
        self._threads = []
        self.reconnects = 0

    def start(self):
        self._publishing.set()
        self.book.publish_started = time.monotonic()
        self.deadline = time.monotonic() + self.max_seconds
        for i in range(self.devices):
            t = threading.Thread(target=self._device, args=(i,), daemon=True, name=f"device-{i}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self, ack_wait=5.0):
        """Stop publishing, wait up to `ack_wait` s for in-flight acks, disconnect."""
        self.book.publish_stopped = time.monotonic()
        self._publishing.clear()
        self._ack_deadline = time.monotonic() + ack_wait
        self._stop.set()
        for t in self._threads:
            t.join(timeout=ack_wait + 5)

    def _device(self, i):
        cid = f"chaos-{self.run_id}-{i}"
        interval = self.devices / self.rate
        n = 0
        first = True
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            conn = _Conn(self.book, cid, self.run_id, self.mqtt5, "127.0.0.1", self.port, self.qos)
            if not conn.open(self.deadline):
                with self.book.lock:
                    self.book.connect_failures += 1
                time.sleep(RECONNECT_EVERY_S)
                continue
            with self.book.lock:
                self.book.connects += 1
                if not first:
                    self.reconnects += 1
            first = False
            n = self._run_conn(conn, n, interval)
            if conn.state == "down":
                conn.close(abrupt=True)
                time.sleep(RECONNECT_EVERY_S)

    def _run_conn(self, conn, n, interval):
        """Publish on one connection until it drops or the driver stops; returns the next n."""
        next_at = time.monotonic()
        while conn.state == "up":
            now = time.monotonic()
            if self._stop.is_set():
                if not conn.inflight or now > self._ack_deadline:
                    conn.close()
                    return n
            elif now >= next_at and len(conn.inflight) < MAX_INFLIGHT:
                conn.publish(n)
                n += 1
                next_at = max(next_at + interval, now - 1.0)  # catch up at most 1 s of lag
                continue
            if now > self.deadline:
                conn.close()
                return n
            wait = 0.1 if self._stop.is_set() or len(conn.inflight) >= MAX_INFLIGHT else next_at - now
            if conn.c.loop(timeout=max(0.0, min(0.1, wait))) != mqtt.MQTT_ERR_SUCCESS:  # select: returns early on a PUBACK
                conn.state = "down"
        with self.book.lock:
            self.book.unacked += len(conn.inflight)
        conn.inflight.clear()
        return n

    # --- results -------------------------------------------------------------------------



class Churn(_Results):
    """N short-lived clients: `cycles` times connect, publish `per_connect`, disconnect
    (alternately clean and abrupt); `storms` of those cycles start with all N connecting at once."""

    def __init__(self, run_id, port, devices, per_connect, cycles, storms, rate, rng, mqtt5=False,
                 max_seconds=600.0, log=print):
        self.run_id, self.port, self.devices, self.per_connect = run_id, port, devices, per_connect
        self.cycles, self.mqtt5, self.log = cycles, mqtt5, log
        self.interval = devices / rate
        self.storm_cycles = {round(k * cycles / storms) for k in range(storms)} if storms else set()
        self.jitter = [[rng.uniform(0, 0.2) for _ in range(cycles)] for _ in range(devices)]
        self.barrier = threading.Barrier(devices, timeout=30)
        self.book = Book()
        self.deadline = time.monotonic() + max_seconds
        self.max_n = {}
        self.reconnects = 0

    def run(self):
        self.book.publish_started = time.monotonic()
        threads = [threading.Thread(target=self._device, args=(i,), daemon=True) for i in range(self.devices)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, self.deadline - time.monotonic() + 10))
        self.book.publish_stopped = time.monotonic()

    def _device(self, i):
        cid = f"chaos-{self.run_id}-{i}"
        n = 0
        for cycle in range(self.cycles):
            if time.monotonic() > self.deadline:
                break
            if cycle in self.storm_cycles:
                try:
                    self.barrier.wait()
                except threading.BrokenBarrierError:
                    pass
            else:
                time.sleep(self.jitter[i][cycle])
            n = self._cycle(cid, n, abrupt=(cycle % 2 == 1))
        self.max_n[cid] = n

    def _cycle(self, cid, n, abrupt):
        conn = _Conn(self.book, cid, self.run_id, self.mqtt5, "127.0.0.1", self.port)
        if not conn.open(self.deadline):
            with self.book.lock:
                self.book.connect_failures += 1
            return n
        with self.book.lock:
            self.book.connects += 1
        start = time.monotonic()
        sent, end = 0, start + CONNECT_TIMEOUT_S + self.per_connect * self.interval
        while conn.state == "up" and time.monotonic() < end and (sent < self.per_connect or conn.inflight):
            while conn.state == "up" and sent < self.per_connect and len(conn.inflight) < MAX_INFLIGHT:
                conn.publish(n)
                n, sent = n + 1, sent + 1
            if conn.c.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:  # select: returns early on a PUBACK
                conn.state = "down"
        conn.close(abrupt=abrupt)
        time.sleep(max(0.0, min(start + self.per_connect * self.interval, self.deadline) - time.monotonic()))  # pace to --rate
        return n

