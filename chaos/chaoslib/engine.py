"""What the engine clouds (`--sink nats`, `--sink mqtt`) share: the books (a Cloud whose HTTP
server is never opened), the queries the scripts ask, and the broker process's modes (down:
stopped by `stop_signal` and started again on the same port and store; hang: SIGSTOP)."""

import signal
import socket
import time

from .cloud import Cloud


class EngineCloud:
    stop_signal = signal.SIGKILL

    def __init__(self, run_id, seed=1, log=print):
        self.book = Cloud(run_id, seed, log)
        self.log = log
        self.proc = None
        self.mode = "up"

    def _run_broker(self):
        raise NotImplementedError

    def _wait_listening(self, name):
        """Return once the broker just started accepts connections on self.port (15 s at most)."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{name} did not listen within 15 s")

    def set_mode(self, mode, fail_ratio=0.5):
        if mode == "fail":
            raise ValueError("an engine has no fail mode (down or hang)")
        if self.mode == "hang" and self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
        if mode == "down" and self.proc is not None:
            self.proc.send_signal(self.stop_signal)
            self.proc.wait(15)
            self.proc = None
        elif mode == "hang" and self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)
        elif mode == "up" and self.proc is None:
            self._run_broker()
        self.mode = mode
        with self.book.lock:
            self.book.mode = mode

    def record(self, key, payload):
        """One message the engine delivered to the test's consumer."""
        with self.book.lock:
            self.book._record({"key": key, "payload": payload})
            self.book.requests["ok"] += 1

    def _kill_broker(self):
        if self.proc is not None:
            if self.mode == "hang":
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

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
