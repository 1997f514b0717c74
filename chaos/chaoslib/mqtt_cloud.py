"""An upstream MQTT broker as the chaos scripts' cloud (`--sink mqtt`): a mosquitto the script
starts (persistence on, in a temp dir) and an MQTT 5 subscriber with a persistent session on
`chaos/#` that records each message like the HTTP cloud does (by its `idempotency-key` user
property, the message key; payload `{"run","device","n"}`).

Modes: up; down (mosquitto stopped with SIGTERM, which saves its sessions, and started again on
the same port and store: a broker restart); hang (mosquitto stopped with SIGSTOP). No "fail".
"""

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

PREFIX = "chaos/"


def mosquitto_bin():
    for path in (shutil.which("mosquitto") or "", "/usr/sbin/mosquitto"):
        if path and os.path.exists(path):
            return path
    raise RuntimeError("mosquitto is not installed (Debian package mosquitto)")


class MqttCloud:
    def __init__(self, run_id, seed=1, log=print):
        self.book = Cloud(run_id, seed, log)  # the recording (its HTTP server is never opened)
        self.log = log
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="chaos-mqtt-")
        self.proc = None
        self.mode = "up"
        self.client = None

    def start(self):
        with open(os.path.join(self.dir, "mosquitto.conf"), "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {self.dir}/\nmax_queued_messages 0\nmax_inflight_messages 0\n")
        self._run_broker()
        self._subscribe()
        return self

    def _run_broker(self):
        conf = os.path.join(self.dir, "mosquitto.conf")
        self.proc = subprocess.Popen([mosquitto_bin(), "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 15 s")

    def _subscribe(self):
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="chaos-cloud", protocol=mqtt.MQTTv5)

        def on_connect(cl, userdata, flags, rc, props):
            if not flags.session_present:
                cl.subscribe(PREFIX + "#", qos=1)
            else:
                subscribed.set()

        def on_message(cl, userdata, m):
            props = dict(getattr(m.properties, "UserProperty", []) or [])
            with self.book.lock:
                self.book._record({"key": props.get("idempotency-key"), "payload": m.payload.decode("utf-8", "replace")})
                self.book.requests["ok"] += 1

        c.on_connect, c.on_message = on_connect, on_message
        c.on_subscribe = lambda *a: subscribed.set()
        c.reconnect_delay_set(0.05, 0.5)
        p = Properties(PacketTypes.CONNECT)
        p.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", self.port, clean_start=False, properties=p)
        c.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the cloud's subscriber did not subscribe")
        self.client = c

    def set_mode(self, mode, fail_ratio=0.5):
        if mode == "fail":
            raise ValueError("--sink mqtt has no fail mode (down or hang)")
        if self.mode == "hang" and self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
        if mode == "down" and self.proc is not None:
            self.proc.terminate()  # SIGTERM: mosquitto saves the sessions and queued messages
            self.proc.wait(15)
            self.proc = None
        elif mode == "hang" and self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)
        elif mode == "up" and self.proc is None:
            self._run_broker()
        self.mode = mode
        with self.book.lock:
            self.book.mode = mode

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
        if self.client is not None:
            self.client.loop_stop()
            self.client = None
        if self.proc is not None:
            if self.mode == "hang":
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
