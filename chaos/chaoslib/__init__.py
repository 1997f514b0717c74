"""Shared plumbing of the chaos scripts: the common CLI flags, the run context (work dir, seeded
randomness, logging), clean-up of every child process, and the drain wait.

Each script builds its parser with `base_parser`, calls `setup(args, scenario)` and ends with
`finish(ctx, verdict)`, which prints the verdict table, writes `--json-out` and returns the exit
code: 0 every bar holds, 1 a bar failed, 2 usage or set-up error (raised as `SetupError`).
"""

import argparse
import atexit
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

EXIT_PASS, EXIT_FAIL, EXIT_SETUP = 0, 1, 2

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_BIN = os.path.join(REPO, "target", "release", "edge-gateway")

_children = []  # Popen objects killed at exit (gateways, strace)
_exit_hooks = []  # callables run at exit (unmount, nft table removal), last registered first


class SetupError(Exception):
    """A usage or set-up problem: the script exits 2 with this message."""


def track(proc):
    """Register a child process to be killed at exit; returns it."""
    _children.append(proc)
    return proc


def on_exit(fn):
    """Run `fn()` at exit (after the children are killed)."""
    _exit_hooks.append(fn)


def _cleanup():
    for p in _children:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
    _children.clear()
    while _exit_hooks:
        try:
            _exit_hooks.pop()()
        except Exception as e:  # clean-up must go on
            print(f"chaos: clean-up step failed: {e}", file=sys.stderr)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


atexit.register(_cleanup)


def base_parser(prog, description, duration=20.0, rate=300.0, devices=4):
    """The flags every script shares; scripts add their own."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Exit code: 0 every pass bar holds, 1 a bar failed, 2 usage/set-up error.\n"
                                       "Everything binds and targets 127.0.0.1 only.")
    g = p.add_argument_group("common")
    g.add_argument("--seed", type=int, default=1, help="seed of every random choice (default 1)")
    g.add_argument("--duration", type=float, default=duration, help=f"seconds of load / chaos (default {duration:g})")
    g.add_argument("--rate", type=float, default=rate, help=f"total messages per second over all devices (default {rate:g})")
    g.add_argument("--devices", type=int, default=devices, help=f"number of device connections (default {devices})")
    g.add_argument("--mqtt5", action="store_true", help="devices speak MQTT 5 instead of 3.1.1")
    g.add_argument("--backend", choices=["redb", "sqlite"], default="redb", help="storage.backend of the gateway (default redb)")
    g.add_argument("--gateway-bin", default=DEFAULT_BIN, help="the edge-gateway binary (default: <repo>/target/release/edge-gateway)")
    g.add_argument("--work-dir", help="where config, data and logs go (default: a fresh temp dir, kept)")
    g.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to wait for the cloud to get everything after the load (default 60)")
    g.add_argument("--json-out", metavar="FILE", help="also write the verdict as JSON to FILE")
    g.add_argument("--quiet", action="store_true", help="only print the verdict table")
    return p


class Ctx:
    """One run: arguments, work dir, seeded rng, run id, logging, start time."""

    def __init__(self, args, scenario):
        self.args = args
        self.scenario = scenario
        self.rng = random.Random(args.seed)
        self.run_id = f"{scenario}-{args.seed}-{os.getpid()}"
        self.work_dir = os.path.abspath(args.work_dir) if args.work_dir else tempfile.mkdtemp(prefix=f"chaos-{scenario}-")
        os.makedirs(self.work_dir, exist_ok=True)
        self.t0 = time.monotonic()

    def log(self, msg):
        if not self.args.quiet:
            print(f"[{time.monotonic() - self.t0:7.2f}s] {msg}", flush=True)


def setup(args, scenario):
    """Validate the common flags and the environment; install signal handlers. Raises SetupError."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if not (os.path.isfile(args.gateway_bin) and os.access(args.gateway_bin, os.X_OK)):
        raise SetupError(f"--gateway-bin: {args.gateway_bin} is not an executable file (build it: cargo build --release)")
    try:
        import paho.mqtt  # noqa: F401
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: F401  (paho >= 2.0)
    except ImportError:
        raise SetupError("paho-mqtt 2.x is missing: python3 -m pip install paho-mqtt==2.2.0 "
                         "(or run with target/test-venv/bin/python)")
    if args.duration <= 0 or args.rate <= 0 or args.devices <= 0:
        raise SetupError("--duration, --rate and --devices must be > 0")
    if args.drain_timeout <= 0:
        raise SetupError("--drain-timeout must be > 0")
    return Ctx(args, scenario)


def main(run):
    """Call `run()` (which returns an exit code) with the exit-2 handling for SetupError."""
    try:
        code = run()
    except SetupError as e:
        print(f"chaos: {e}", file=sys.stderr)
        code = EXIT_SETUP
    finally:
        _cleanup()
    sys.exit(code)


def wait_drain(ctx, driver, cloud, gw, timeout):
    """After the load: wait until every acked id is at the cloud, or the backlog is 0 and nothing
    new arrived for 2 s; at most `timeout` s. Returns the seconds waited."""
    start = time.monotonic()
    deadline = start + timeout
    acked = driver.acked_ids()
    while time.monotonic() < deadline:
        if acked <= cloud.delivered_ids():
            break
        backlog = gw.backlog() if gw is not None and gw.alive() else None
        if backlog == 0 and time.monotonic() - cloud.last_delivery() >= 2.0:
            break
        time.sleep(0.1)
    waited = time.monotonic() - start
    ctx.log(f"drain: waited {waited:.1f}s, {len(acked & cloud.delivered_ids())}/{len(acked)} acked ids at the cloud")
    return waited


def finish(ctx, verdict):
    """Print the table, write the JSON, say where the work dir is; return the exit code."""
    from .verdict import print_table, write_json
    print_table(verdict)
    if ctx.args.json_out:
        write_json(verdict, ctx.args.json_out)
    print(f"work dir (kept): {ctx.work_dir}")
    return EXIT_PASS if verdict["pass"] else EXIT_FAIL
