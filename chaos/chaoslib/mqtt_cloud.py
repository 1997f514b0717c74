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
import subprocess
import tempfile
import threading

from .engine import EngineCloud
from .gateway import free_port

PREFIX = "chaos/"


def mosquitto_bin():
    for path in (shutil.which("mosquitto") or "", "/usr/sbin/mosquitto"):
        if path and os.path.exists(path):
            return path
    raise RuntimeError("mosquitto is not installed (Debian package mosquitto)")


class MqttCloud(EngineCloud):
    stop_signal = signal.SIGTERM  # mosquitto saves its sessions and queued messages

    def __init__(self, run_id, seed=1, log=print):
        super().__init__(run_id, seed, log)
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="chaos-mqtt-")
        self.client = None

    def start(self):
        # `user root`: started as root, mosquitto otherwise switches to the user `mosquitto`,
        # which cannot write its store into this 0700 temp dir: the "restart" then came back
        # without the subscriber's session, acknowledged the bridge's messages with 0x10 (no
        # subscribers) and dropped them. Ignored when not started as root.
        with open(os.path.join(self.dir, "mosquitto.conf"), "w") as f:
            f.write(f"user root\nlistener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {self.dir}/\nmax_queued_messages 0\nmax_inflight_messages 0\n")
        self._run_broker()
        self._subscribe()
        return self

    def _run_broker(self):
        conf = os.path.join(self.dir, "mosquitto.conf")
        self.proc = subprocess.Popen([mosquitto_bin(), "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_listening("mosquitto")

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
            self.record(props.get("idempotency-key"), m.payload.decode("utf-8", "replace"))

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

    def stop(self):
        if self.client is not None:
            self.client.loop_stop()
            self.client = None
        self._kill_broker()
        shutil.rmtree(self.dir, ignore_errors=True)
