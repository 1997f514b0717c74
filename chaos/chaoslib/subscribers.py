"""Persistent subscribers attached to the gateway itself (its local broker), for the issue 14
chaos bar: every message acknowledged to a device reaches every persistent subscriber that had
subscribed before it, across SIGKILLs of the gateway; duplicates are allowed at QoS 1, none at
QoS 2.

Each subscriber is a paho client with its own network thread (`loop_start`, reconnecting every
50-500 ms by itself), MQTT 3.1.1 clean session 0 or MQTT 5 clean start 0 with a session expiry
of an hour, subscribed to `devices/+/chaos` at QoS 1 or 2 before the load starts (and again
only if a CONNACK says the session is gone). Every message received is counted by its
(device, n), so a repeat is a duplicate.
"""

import collections
import json
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TOPIC = "devices/+/chaos"


class _Subscriber:
    def __init__(self, client_id, port, qos, mqtt5, log):
        self.client_id, self.qos, self.mqtt5, self.log = client_id, qos, mqtt5, log
        self.lock = threading.Lock()
        self.got = collections.Counter()  # (device, n) -> times received
        self.subscribed = threading.Event()
        self.lost_sessions = 0  # CONNACKs without session present after the first
        self.connects = 0
        proto = mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311
        kw = {} if mqtt5 else {"clean_session": False}
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto, **kw)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(0.05, 0.5)
        self.port = port

    def start(self):
        if self.mqtt5:
            p = Properties(PacketTypes.CONNECT)
            p.SessionExpiryInterval = 3600
            self.c.connect("127.0.0.1", self.port, keepalive=30, clean_start=False, properties=p)
        else:
            self.c.connect("127.0.0.1", self.port, keepalive=30)
        self.c.loop_start()
        return self

    def _on_connect(self, c, _u, flags, reason, _props):
        if reason.is_failure:
            return
        self.connects += 1
        if not flags.session_present:
            if self.connects > 1:
                self.lost_sessions += 1
            c.subscribe(TOPIC, qos=self.qos)

    def _on_message(self, _c, _u, m):
        try:
            body = json.loads(m.payload)
            key = (body["device"], body["n"])
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            self.got[key] += 1

    def received(self):
        with self.lock:
            return set(self.got)

    def duplicates(self):
        with self.lock:
            return sum(n - 1 for n in self.got.values() if n > 1)

    def stop(self):
        try:
            self.c.disconnect()
        except OSError:
            pass
        self.c.loop_stop()


class Subscribers:
    """`count` persistent subscribers at `qos` on the gateway's MQTT port."""

    def __init__(self, run_id, port, count, qos, mqtt5, log):
        self.subs = [_Subscriber(f"chaos-{run_id}-sub-{i}", port, qos, mqtt5, log) for i in range(count)]
        self.qos, self.log = qos, log

    def start(self, timeout=10.0):
        """Connect and subscribe every one; RuntimeError if one is not subscribed in time."""
        for s in self.subs:
            s.start()
        for s in self.subs:
            if not s.subscribed.wait(timeout):
                raise RuntimeError(f"subscriber {s.client_id} did not get its SUBACK within {timeout:g} s")
        self.log(f"{len(self.subs)} persistent subscribers at QoS {self.qos} on {TOPIC}")
        return self

    def wait_for(self, acked, timeout):
        """Wait until every subscriber has every id in `acked`, at most `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(acked <= s.received() for s in self.subs):
            time.sleep(0.1)

    def report(self, acked):
        """Verdict keys: missing (acked ids a subscriber lacks, summed), a sample, duplicates."""
        missing = [(s.client_id, d, n) for s in self.subs for d, n in sorted(acked - s.received())]
        return {
            "subscribers": len(self.subs),
            "sub_qos": self.qos,
            "sub_missing": len(missing),
            "sub_missing_sample": [f"{c}:{d}#{n}" for c, d, n in missing[:10]],
            "sub_duplicates": sum(s.duplicates() for s in self.subs),
            "sub_sessions_lost": sum(s.lost_sessions for s in self.subs),
        }

    def stop(self):
        for s in self.subs:
            s.stop()
