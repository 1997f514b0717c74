"""The gateway inside a virtual machine that can lose power: a minimal Linux guest in qemu (TCG),
built from Debian packages only, with the data dir on a virtio disk image holding ext4.

- The kernel and its modules come from the Debian package `linux-image-amd64` (the installed
  /boot/vmlinuz-* when there is one, else the package fetched with `apt-get download` and
  unpacked into the cache dir, so nothing is installed and no initramfs hook runs); busybox
  from `busybox-static` (the same way); `e2fsck` and the gateway binary from the host, each
  with the shared libraries `ldd` names. The initramfs is written here (cpio "newc", gzip).
- The guest's init (`INIT` below) loads the modules for virtio, ext4 and device-mapper, runs
  `e2fsck -p` on the data disk (printing its exit code), mounts it on /data, configures the
  user-mode network and runs the gateway with its log on the serial console, which qemu writes
  to a file per boot.
- The disk is opened with `cache=writeback`: qemu writes what the guest submits into the host's
  page cache and `fdatasync`s the image when the guest flushes. A SIGKILL of qemu then loses
  exactly what a power cut of a machine whose disk honours flushes loses: the guest's page
  cache, every write not yet submitted to the disk, the state of the guest kernel (its journal
  in memory, its dirty metadata). It does not drop writes the disk had accepted but not flushed
  (a disk with a volatile cache that lies is not modelled).
- User-mode networking forwards two loopback ports of the host to the guest's MQTT (1883) and
  HTTP (9880) ports; the guest reaches the host's loopback (the chaos cloud) as 10.0.2.2.
"""

import glob
import gzip
import os
import re
import shutil
import signal
import stat
import subprocess
import time

from . import SetupError, track
from .gateway import free_port, http, parse_metrics

GUEST_HOST = "10.0.2.2"  # the host's loopback, seen from the guest (slirp)
MODULE_ROOTS = ["virtio_pci", "virtio_blk", "virtio_net", "crc32c_generic", "ext4", "dm-flakey"]
# With --flakey: dmsetup (package dmsetup) and its libraries go into the initramfs too.

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules.order); do insmod /lib/modules/$m || echo "POWERCUT insmod $m failed"; done
echo "POWERCUT booted $(cut -d' ' -f1 /proc/uptime)"
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
/sbin/e2fsck -p /dev/vda
rc=$?
echo "POWERCUT e2fsck rc=$rc"
if [ $rc -ge 4 ]; then /sbin/e2fsck -fy /dev/vda; echo "POWERCUT e2fsck-fy rc=$?"; fi
mkdir -p /data
dev=/dev/vda
if [ -f /etc/flakey ]; then
    # A device-mapper device under the data file system: linear (a plain pass-through) until the
    # gateway is ready, dm-flakey from then on (below).
    DM_DISABLE_UDEV=1 /sbin/dmsetup create data --table "0 $(blockdev --getsz /dev/vda) linear /dev/vda 0" \
        && dev=/dev/mapper/data
fi
mount -t ext4 $dev /data || { echo "POWERCUT mount failed"; poweroff -f; }
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0
ip link set eth0 up
ip route add default via 10.0.2.2
[ -f /etc/no-fsync ] && export EDGE_GATEWAY_UNSAFE_NO_FSYNC=1
echo "POWERCUT gateway starting $(cut -d' ' -f1 /proc/uptime)"
RUST_LOG=warn /bin/edge-gateway run --config /etc/gateway.toml --log-format human &
gateway=$!
if [ "$dev" = /dev/mapper/data ]; then
    # Once /readyz says 200 (the store opened on a working disk, however slow the boot), writes
    # (and flushes) fail with EIO for DOWN s out of every UP+DOWN s (reads work). Armed at a fixed
    # time after boot instead, a slow host's store open ran into the fault: the gateway refused
    # to start and the guest powered off (a CI run lost the test to it). Polled for at most 300 s
    # of the guest's uptime; not ready by then, the fault is not armed (the host's bar says so).
    read up down < /etc/flakey
    (
        export DM_DISABLE_UDEV=1
        end=$(( $(cut -d. -f1 /proc/uptime) + 300 ))
        ready=0
        while [ "$(cut -d. -f1 /proc/uptime)" -lt $end ]; do
            # nc, not wget: Debian's static busybox 1.35 wget crashes (SIGSEGV). busybox nc quits
            # at the end of its input without reading the answer: the sleep keeps it open for it
            # (an answer takes up to a few hundred ms under TCG).
            if { printf 'GET /readyz HTTP/1.0\r\n\r\n'; sleep 1; } | timeout 3 nc -w 2 127.0.0.1 9880 2>/dev/null \
                | head -n 1 | grep -q ' 200 '; then
                ready=1
                break
            fi
            sleep 0.2
        done
        table="0 $(blockdev --getsz /dev/vda) flakey /dev/vda 0 $up $down 1 error_writes"
        if [ $ready = 0 ]; then
            echo "POWERCUT flakey not armed: /readyz never answered 200"
        elif ! /sbin/dmsetup suspend data; then
            echo "POWERCUT flakey not armed: dmsetup suspend failed"
        elif /sbin/dmsetup load data --table "$table" && /sbin/dmsetup resume data; then
            echo "POWERCUT flakey up=$up down=$down at $(cut -d' ' -f1 /proc/uptime)"
        else
            # Never leave the file system frozen: back to the linear table.
            /sbin/dmsetup clear data
            /sbin/dmsetup resume data
            echo "POWERCUT flakey not armed: dmsetup load or resume failed"
        fi
    ) &
fi
wait $gateway
echo "POWERCUT gateway exited rc=$?"
sync
poweroff -f
"""


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SetupError(f"{' '.join(cmd)} failed (exit {r.returncode}): {r.stderr.strip()[:500]}")
    return r.stdout


def _unpack_package(name, cache):
    """`apt-get download NAME` into `cache` and unpack it there (once; runs at the same time
    wait for each other); the unpacked root."""
    import fcntl
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _unpack_locked(name, cache)


def _unpack_locked(name, cache):
    root = os.path.join(cache, name)
    if os.path.isdir(root):
        return root
    for f in glob.glob(os.path.join(cache, f"{name}_*.deb")):
        os.remove(f)
    _run(["apt-get", "download", name], cwd=cache)
    deb = glob.glob(os.path.join(cache, f"{name}_*.deb"))
    if not deb:
        raise SetupError(f"apt-get download {name} wrote no .deb")
    _run(["dpkg-deb", "-x", deb[0], root + ".tmp"])
    os.rename(root + ".tmp", root)
    return root


def kernel(cache):
    """(vmlinuz path, modules dir) of a Debian kernel: the installed one, else the package's."""
    for vmlinuz in sorted(glob.glob("/boot/vmlinuz-*"), reverse=True):
        ver = os.path.basename(vmlinuz)[len("vmlinuz-"):]
        mods = f"/lib/modules/{ver}"
        if os.path.isdir(os.path.join(mods, "kernel")) and os.access(vmlinuz, os.R_OK):
            return vmlinuz, mods
    depends = _run(["apt-cache", "depends", "linux-image-amd64"])
    m = re.search(r"Depends: (linux-image-[0-9][^\s]*-amd64)", depends)
    if not m:
        raise SetupError("linux-image-amd64 names no versioned kernel package")
    root = _unpack_package(m.group(1), cache)
    vmlinuz = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))
    mods = glob.glob(os.path.join(root, "lib", "modules", "*"))
    if not vmlinuz or not mods:
        raise SetupError(f"{m.group(1)} holds no kernel or modules")
    return vmlinuz[0], mods[0]


def busybox(cache):
    """A static busybox: the installed busybox-static's, else the package unpacked in `cache`."""
    if os.path.exists("/bin/busybox") and not _libs("/bin/busybox"):
        return "/bin/busybox"
    root = _unpack_package("busybox-static", cache)
    return os.path.join(root, "bin", "busybox")


def _modinfo_depends(path):
    with open(path, "rb") as f:
        data = f.read()
    m = re.search(rb"depends=([^\x00]*)\x00", data)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def modules_in_order(mods_dir, roots):
    """Paths (relative to mods_dir) of `roots` and everything they depend on, dependencies
    first, from each module's own `depends=` field (no modules.dep needed). Built-in ones are
    skipped (not found as files)."""
    index = {}
    for p in glob.glob(os.path.join(mods_dir, "kernel", "**", "*.ko"), recursive=True):
        name = os.path.basename(p)[:-3]
        index[name] = p
        index[name.replace("-", "_")] = p
    order, seen = [], set()

    def visit(name):
        p = index.get(name) or index.get(name.replace("-", "_"))
        if p is None or p in seen:
            return
        seen.add(p)
        for d in _modinfo_depends(p):
            visit(d)
        order.append(p)

    for r in roots:
        if index.get(r) is None and index.get(r.replace("-", "_")) is None:
            raise SetupError(f"kernel module {r} not found under {mods_dir}")
        visit(r)
    return order


def _libs(binary):
    """Shared libraries of `binary` (paths), from ldd, the loader included."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+)", line)
        if m and os.path.exists(m.group(1)):
            libs.append(m.group(1))
    return libs


class _Cpio:
    """A cpio archive in the "newc" format the kernel unpacks into its initramfs."""

    def __init__(self):
        self.parts, self.ino, self.dirs = [], 1, set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        self.ino += 1
        name_b = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0]
        hdr = b"070701" + b"".join(b"%08x" % v for v in fields)
        self.parts += [hdr, name_b, b"\0" * ((4 - (len(hdr) + len(name_b)) % 4) % 4), data, b"\0" * ((4 - len(data) % 4) % 4)]

    def dir(self, name):
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self.dirs:
                self.dirs.add(d)
                self._entry(d, stat.S_IFDIR | 0o755)

    def file(self, name, data, mode=0o644):
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        self._entry(name, stat.S_IFREG | mode, data)

    def copy(self, name, src, mode=None):
        with open(src, "rb") as f:
            data = f.read()
        self.file(name, data, mode if mode is not None else (0o755 if os.access(src, os.X_OK) else 0o644))

    def chardev(self, name, major, minor):
        self.dir(os.path.dirname(name.strip("/")))
        self._entry(name.strip("/"), stat.S_IFCHR | 0o600, rdev=(major, minor))

    def write_gz(self, path):
        self._entry("TRAILER!!!", 0)
        with gzip.open(path, "wb", compresslevel=1) as f:
            for p in self.parts:
                f.write(p)


def build_initramfs(out, gateway_bin, config_text, acl_text, token, cache, no_fsync=False, flakey=None):
    """Write the initramfs to `out`; returns the kernel image to boot it with."""
    vmlinuz, mods_dir = kernel(cache)
    a = _Cpio()
    for d in ("proc", "sys", "dev", "data", "tmp", "etc", "sbin"):
        a.dir(d)
    a.chardev("dev/console", 5, 1)
    a.copy("bin/busybox", busybox(cache), 0o755)
    a.file("init", INIT.encode(), 0o755)
    # The gateway, stripped (the debug build is ~500 MB; RAM holds the initramfs), beside `out`
    # (not in the shared cache: two runs at once would write the same file).
    stripped = os.path.join(os.path.dirname(os.path.abspath(out)), "edge-gateway.stripped")
    _run(["strip", "-o", stripped, gateway_bin])
    a.copy("bin/edge-gateway", stripped, 0o755)
    e2fsck = shutil.which("e2fsck") or "/sbin/e2fsck"
    if not os.path.exists(e2fsck):
        raise SetupError("e2fsck is missing (apt-get install e2fsprogs)")
    a.copy("sbin/e2fsck", e2fsck, 0o755)
    tools = [stripped, e2fsck]
    if flakey:
        dmsetup = shutil.which("dmsetup") or "/sbin/dmsetup"
        if not os.path.exists(dmsetup):
            raise SetupError("dmsetup is missing (apt-get install dmsetup)")
        a.copy("sbin/dmsetup", dmsetup, 0o755)
        a.file("etc/flakey", f"{flakey[0]} {flakey[1]}\n".encode())
        tools.append(dmsetup)
    for lib in sorted(set(lib for t in tools for lib in _libs(t))):
        a.copy(lib.lstrip("/"), os.path.realpath(lib), 0o755)
    order = []
    for p in modules_in_order(mods_dir, MODULE_ROOTS):
        rel = os.path.basename(p)
        a.copy(f"lib/modules/{rel}", p, 0o644)
        order.append(rel)
    a.file("etc/modules.order", ("\n".join(order) + "\n").encode())
    a.file("etc/gateway.toml", config_text.encode())
    a.file("etc/acl.toml", acl_text.encode())
    a.file("etc/http.token", (token + "\n").encode(), 0o600)
    # No CA bundle: the sink is plain HTTP (a minimal image has none either).
    if no_fsync:
        a.file("etc/no-fsync", b"1\n")
    a.write_gz(out)
    return vmlinuz


def make_disk(path, size_mb=512):
    """A raw image holding an empty ext4 file system (with its journal, as installed)."""
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
    mkfs = shutil.which("mkfs.ext4") or "/sbin/mkfs.ext4"
    _run([mkfs, "-q", "-F", "-L", "edge-data", path])


def guest_config(cloud_url, backend, acl="/etc/acl.toml"):
    """The guest's gateway.toml: data on the disk, the chaos cloud on the host."""
    url = cloud_url.replace("127.0.0.1", GUEST_HOST)
    return (f'[gateway]\ndata_dir = "/data"\n'
            f'[mqtt]\nlisten = "0.0.0.0:1883"\nconnect_timeout_secs = 5\n'
            f'[http]\nlisten = "0.0.0.0:9880"\nauth = "all"\ntoken_file = "/etc/http.token"\n'
            f'[storage]\nbackend = "{backend}"\n'
            f'[auth]\nplain = "anonymous"\nacl_file = "{acl}"\n'
            f'[[sinks]]\nname = "cloud"\nkind = "http"\nurl = "{url}"\ntimeout_ms = 5000\n'
            f'backoff_initial_ms = 50\nbackoff_max_ms = 1000\n')


class VmGateway:
    """The guest, booted again and again on the same disk; the same host ports every boot."""

    def __init__(self, work_dir, kernel_path, initramfs, disk, token, memory_mb=768, log=print):
        """`initramfs` may be replaced between boots (`self.initramfs`), e.g. without the fault."""
        self.work_dir, self.kernel, self.initramfs, self.disk, self.token = work_dir, kernel_path, initramfs, disk, token
        self.memory_mb, self.log = memory_mb, log
        self.mqtt_port, self.http_port = free_port(), free_port()
        self.proc, self.boots = None, 0
        qemu = shutil.which("qemu-system-x86_64")
        if qemu is None:
            raise SetupError("qemu-system-x86_64 is missing (apt-get install --no-install-recommends qemu-system-x86)")
        self.qemu = qemu

    def console_path(self, n=None):
        return os.path.join(self.work_dir, f"console-{n or self.boots}.log")

    def boot(self):
        """Start qemu (power on)."""
        self.boots += 1
        cmd = [self.qemu, "-accel", "tcg", "-m", str(self.memory_mb), "-smp", "1", "-no-reboot",
               "-kernel", self.kernel, "-initrd", self.initramfs,
               "-append", "console=ttyS0 panic=-1 quiet loglevel=3",
               "-drive", f"file={self.disk},format=raw,if=virtio,cache=writeback",
               "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.mqtt_port}-:1883,hostfwd=tcp:127.0.0.1:{self.http_port}-:9880",
               "-device", "virtio-net-pci,netdev=n0",
               "-serial", f"file:{self.console_path()}", "-monitor", "none", "-display", "none"]
        self.powered_at = time.monotonic()
        self.proc = track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work_dir, f"qemu-{self.boots}.err"), "wb")))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cut(self):
        """Power cut: SIGKILL qemu."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(timeout=10)

    def console(self, n=None):
        try:
            with open(self.console_path(n), "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def marks(self, n=None):
        """The `POWERCUT ...` lines of a boot's console."""
        return [line.strip() for line in self.console(n).splitlines() if line.startswith("POWERCUT")]

    def e2fsck_rc(self, n=None):
        for m in self.marks(n):
            r = re.match(r"POWERCUT e2fsck rc=(\d+)", m)
            if r:
                return int(r.group(1))
        return None

    def wait_ready(self, timeout=120.0):
        """(ms from power on, ms from the gateway's start in the guest) to /readyz 200; None when
        not ready in time or qemu ended."""
        deadline = time.monotonic() + timeout
        gateway_started = None
        while time.monotonic() < deadline and self.alive():
            if gateway_started is None and any(m.startswith("POWERCUT gateway starting") for m in self.marks()):
                gateway_started = time.monotonic()
            if http("GET", f"http://127.0.0.1:{self.http_port}/readyz", timeout=1.0)[0] == 200:
                now = time.monotonic()
                return (now - self.powered_at) * 1000.0, ((now - gateway_started) * 1000.0 if gateway_started else None)
            time.sleep(0.05)
        return None

    def metrics(self):
        """The guest gateway's scrape (the HTTP API needs the token: it listens beyond loopback)."""
        status, body = http("GET", f"http://127.0.0.1:{self.http_port}/metrics", headers={"Authorization": f"Bearer {self.token}"}, timeout=2.0)
        return parse_metrics(body) if status == 200 else {}

    def backlog(self):
        return self.metrics().get("gateway_backlog_messages")
