"""The gateway under test as a child process: its config, start/kill/terminate, readiness, the
admin API (bearer token) and the Prometheus scrape. Ports are picked once and kept across
restarts, so devices and scripts reconnect to the same addresses.
"""

import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from . import SetupError, track

LAB_ACL = '[[allow]]\nidentities = ["*"]\npublish = ["#"]\nsubscribe = ["#"]\n'


# Ports for the processes the scripts start and restart: below Linux's ephemeral range
# (32768-60999), so no outgoing connection or port-0 bind of another process can take one
# between the check here and the process's own bind (a CI run lost a chaos test to that), and
# apart from the Rust tests' own range (20000-31999, tests/it/util.rs).
PORTS = (10_000, 20_000)
_random = random.SystemRandom()
_given = set()


def free_port():
    """A loopback TCP port that was free a moment ago, never the same one twice in a process."""
    for _ in range(2000):
        port = _random.randrange(*PORTS)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise SetupError(f"no free port in {PORTS[0]}-{PORTS[1] - 1} on 127.0.0.1")


def http(method, url, headers=None, timeout=2.0):
    """(status, body text); status 0 when the connection failed."""
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def parse_metrics(text):
    """Prometheus text -> {series string: value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        try:
            out[series] = float(value)
        except ValueError:
            continue
    return out


def _labels(series):
    m = re.match(r"^([^{]+)(?:\{(.*)\})?$", series)
    if not m:
        return series, {}
    return m.group(1), dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))


def sample(metrics, name, labels=None):
    """Sum of every series of `name` whose labels include `labels`."""
    total = 0.0
    for series, v in metrics.items():
        n, ls = _labels(series)
        if n == name and all(ls.get(k) == val for k, val in (labels or {}).items()):
            total += v
    return total


def histogram_quantile(metrics, name, q):
    """Upper bound (s) of the bucket holding quantile `q` of histogram `name` (all labels summed);
    None when it has no observations."""
    buckets = {}
    for series, v in metrics.items():
        n, ls = _labels(series)
        if n == f"{name}_bucket" and "le" in ls:
            le = float("inf") if ls["le"] == "+Inf" else float(ls["le"])
            buckets[le] = buckets.get(le, 0.0) + v
    if not buckets or buckets.get(float("inf"), 0.0) == 0:
        return None
    total = buckets[float("inf")]
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le
    return float("inf")


class Gateway:
    """One gateway (data dir, config, ports) that can be started many times."""

    def __init__(self, binary, work_dir, cloud_url, data_dir=None, extra=None, log=print, supervision=None, backend="redb", sink="http"):
        self.binary = binary
        self.backend = backend  # storage.backend: the store is data_dir/gateway.<backend>
        self.sink = sink  # the cloud's kind: http (the chaos ingestion server) or nats (JetStream)
        self.supervision = supervision  # optional --supervision FILE for `run`
        self.work_dir = work_dir
        self.data_dir = data_dir or os.path.join(work_dir, "data")
        self.cloud_url = cloud_url
        self.extra = extra or {}
        self.log = log
        self.mqtt_port, self.http_port, self.admin_port = free_port(), free_port(), free_port()
        self.config = os.path.join(work_dir, "gateway.toml")
        self.token_file = os.path.join(work_dir, "admin.token")
        self.proc = None
        self.starts = 0
        self.store_path = os.path.join(self.data_dir, f"gateway.{backend}")
        os.makedirs(self.data_dir, exist_ok=True)
        self._write_files()

    def _write_files(self):
        acl = os.path.join(self.work_dir, "lab-acl.toml")
        with open(acl, "w") as f:
            f.write(LAB_ACL)
        self.token = secrets.token_hex(16)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")
        e = self.extra
        text = (f'[gateway]\ndata_dir = "{self.data_dir}"\n{e.get("gateway", "")}\n'
                f'[mqtt]\nlisten = "127.0.0.1:{self.mqtt_port}"\nconnect_timeout_secs = 5\n{e.get("mqtt", "")}\n'
                f'[http]\nlisten = "127.0.0.1:{self.http_port}"\n'
                f'[storage]\nbackend = "{self.backend}"\n{e.get("storage", "")}\n'
                f'[auth]\nplain = "anonymous"\nacl_file = "{acl}"\n'
                f'[[sinks]]\nname = "cloud"\nkind = "{self.sink}"\nurl = "{self.cloud_url}"\ntimeout_ms = 2000\n'
                + {"nats": 'subject_prefix = "chaos"\nstream = "CHAOS"\n', "mqtt": 'topic_prefix = "chaos/"\n'}.get(self.sink, '') +
                f'backoff_initial_ms = 20\nbackoff_max_ms = 500\n{e.get("sink", "")}\n')
        with open(self.config, "w") as f:
            f.write(text)

    def check_config(self):
        """`edge-gateway check-config FILE`; SetupError with its output when it fails."""
        sup = ["--supervision", self.supervision] if self.supervision else []
        r = subprocess.run([self.binary, "check-config", self.config] + sup, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise SetupError(f"check-config {self.config} failed (exit {r.returncode}):\n{r.stderr}{r.stdout}")

    # --- process -------------------------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, wait_ready=True, ready_timeout=30.0):
        """Spawn `run`; with wait_ready, return ms from spawn to the first /readyz 200 (None if
        not ready in time). Without, return None at once. If the very first start finds one of
        its ports taken by another program since it was picked, new ones are picked (twice at
        most): the scripts connect to the gateway only once it is up."""
        first = self.starts == 0
        ms = self._spawn(wait_ready, ready_timeout)
        for _ in range(2):
            if not first or not wait_ready or ms is not None or self.alive():
                break
            if "Address already in use" not in self.log_tail():
                break
            self.log(f"a port of {self.log_path()} was taken meanwhile; starting again on other ports")
            self.mqtt_port, self.http_port, self.admin_port = free_port(), free_port(), free_port()
            self._write_files()
            ms = self._spawn(wait_ready, ready_timeout)
        return ms

    def _spawn(self, wait_ready, ready_timeout):
        self.starts += 1
        log = open(os.path.join(self.work_dir, f"gateway-{self.starts}.log"), "ab")
        t = time.monotonic()
        self.proc = track(subprocess.Popen(
            [self.binary, "run", "--config", self.config, "--admin-listen", f"127.0.0.1:{self.admin_port}",
             "--admin-token-file", self.token_file] + (["--supervision", self.supervision] if self.supervision else []),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")}))
        log.close()
        self.spawned_at = t
        return self.wait_ready(ready_timeout) if wait_ready else None

    def wait_ready(self, timeout=30.0, since=None):
        """ms from `since` (default: the last spawn) to /readyz 200, polling every 10 ms; None on timeout
        or when the process died."""
        since = self.spawned_at if since is None else since
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if self.readyz()[0] == 200:
                return (time.monotonic() - since) * 1000.0
            time.sleep(0.01)
        return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(timeout=10)

    def terminate(self, timeout=15.0):
        """SIGTERM and wait; the exit code, or None if it had to be SIGKILLed."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.log(f"gateway pid {self.proc.pid} ignored SIGTERM for {timeout:g}s: SIGKILL")
            self.kill9()
            return None

    def log_path(self, n=None):
        return os.path.join(self.work_dir, f"gateway-{n or self.starts}.log")

    def log_tail(self, lines=15, n=None):
        """The last lines of a start's log (default: the last start's)."""
        try:
            with open(self.log_path(n), "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 16384))
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            return f"(cannot read {self.log_path(n)}: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def not_ready(self):
        """The set-up error for a start that did not get ready, with its log's last lines."""
        return SetupError(f"the gateway did not get ready; see {self.log_path()}; its last lines:\n{self.log_tail()}")

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    # --- HTTP API ------------------------------------------------------------------------

    def get(self, path, timeout=2.0):
        return http("GET", f"http://127.0.0.1:{self.http_port}{path}", timeout=timeout)

    def post(self, path, timeout=5.0):
        """POST with the HTTP API's bearer token (data_dir/http.token, made at the first start)."""
        with open(os.path.join(self.data_dir, "http.token")) as f:
            token = f.read().strip()
        headers = {"Authorization": f"Bearer {token}"}
        return http("POST", f"http://127.0.0.1:{self.http_port}{path}", headers=headers, timeout=timeout)

    def readyz(self):
        return self.get("/readyz", timeout=1.0)

    def metrics(self):
        status, body = self.get("/metrics")
        return parse_metrics(body) if status == 200 else {}

    def sample(self, name, labels=None):
        return sample(self.metrics(), name, labels)

    def backlog(self):
        """gateway_backlog_messages, or None when the scrape fails."""
        m = self.metrics()
        return m.get("gateway_backlog_messages") if m else None

    # --- admin API -----------------------------------------------------------------------

    def _admin(self, method, path, timeout=2.0):
        return http(method, f"http://127.0.0.1:{self.admin_port}{path}",
                    headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout)

    def tree(self):
        """The /admin/tree JSON, or {} when it does not answer."""
        status, body = self._admin("GET", "/admin/tree")
        return json.loads(body) if status == 200 else {}

    def kill(self, path):
        return self._admin("POST", f"/admin/actors/{path}/kill")

    def faults(self, n):
        return self._admin("POST", f"/admin/storage/faults?n={n}")
