"""A FUSE filesystem that forgets, at a simulated power cut, everything not yet synced.

The LazyFS approach (Ramos et al., "When amnesia strikes: understanding and reproducing
data loss bugs with fault injection", VLDB 2024; https://github.com/dsrhaslab/lazyfs):
writes go to a page cache the filesystem keeps in its own memory, ``fsync`` copies a
file's cache to its durable image, and a power cut throws the cache away.  A test that
SIGKILLs a writer on a real filesystem proves nothing about ``fsync``, because the
kernel's page cache outlives the process; here it does not.

What is durable, and when (the rules of Linux filesystems that order metadata with a
journal, ext4 among them):

* a file's bytes and size: when the file is ``fsync``'d or ``fdatasync``'d;
* a directory's names (create, unlink, rename): when the directory is ``fsync``'d — and a
  file's own name in its directory when the file is ``fsync``'d, as ext4 commits the
  creation in the same journal transaction as the data (fs/ext4/fsync.c); SQLite relies
  on this for its main database file, and ``fsync``s the directory itself after creating
  a journal or write-ahead log;
* everything, at ``sync_all`` (the ``sync`` command).

At a cut, every directory goes back to its durable names and every file to its durable
bytes.  With ``tear``, the last write not yet synced is applied in part — a random
whole number of 512-byte sectors of it — as a disk losing power in the middle of a
write may leave it.  In-flight requests from the processes the cut killed are refused
afterwards (their file handles belong to the old epoch, their pids are fenced), so
nothing lands after the cut.

It runs as its own process (``python lazyfs.py MOUNTPOINT IMAGE``), commanded by lines
on stdin (``cut [tear] [pid ...]``, ``sync``, ``save``, ``stats``, ``exit``), each answered
by a line on stdout; ``save`` writes the durable image to IMAGE, from which the next
server starts — a remount after a reboot.  :class:`LazyFS` drives it from a test.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import random
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SECTOR = 512


class Node:
    """A file or a directory: what the processes see, and what survives a cut."""

    def __init__(self, mode: int) -> None:
        self.mode = mode
        self.data = bytearray()
        self.synced = b""
        self.entries: dict[str, Node] = {}
        self.synced_entries: dict[str, Node] = {}
        self.mtime = time.time_ns()

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    def __getstate__(self) -> dict[str, Any]:
        """Only the durable state is saved: a remount starts from what a cut would leave."""
        return {"mode": self.mode, "synced": self.synced, "synced_entries": self.synced_entries}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.mode = state["mode"]
        self.synced = state["synced"]
        self.synced_entries = state["synced_entries"]
        self.data = bytearray(self.synced)
        self.entries = dict(self.synced_entries)
        self.mtime = time.time_ns()


def _revert(directory: Node, seen: set[int]) -> None:
    directory.entries = dict(directory.synced_entries)
    for child in directory.entries.values():
        if id(child) in seen:
            continue
        seen.add(id(child))
        if child.is_dir:
            _revert(child, seen)
        else:
            child.data = bytearray(child.synced)


def _make_ops(root: Node) -> Any:
    from mfusepy import FuseOSError, Operations, fuse_get_context

    class LazyOps(Operations):
        use_ns = True

        def __init__(self) -> None:
            self.root = root
            self._mutex = threading.RLock()
            self.handles: dict[int, tuple[Node, int]] = {}
            self.next_fh = 1
            self.epoch = 0
            self.fenced: set[int] = set()
            self.last_write: tuple[Node, int, bytes] | None = None
            self.stats = {"writes": 0, "fsyncs": 0, "dirsyncs": 0, "cuts": 0, "refused": 0}

        # -- helpers ------------------------------------------------------------------

        def _check_caller(self) -> None:
            if fuse_get_context()[2] in self.fenced:
                self.stats["refused"] += 1
                raise FuseOSError(errno.EIO)

        def _lookup(self, path: str) -> Node:
            node = self.root
            for part in filter(None, path.split("/")):
                if not node.is_dir or part not in node.entries:
                    raise FuseOSError(errno.ENOENT)
                node = node.entries[part]
            return node

        def _parent(self, path: str) -> tuple[Node, str]:
            head, _, name = path.rstrip("/").rpartition("/")
            parent = self._lookup(head or "/")
            if not parent.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            return parent, name

        def _handle(self, fh: int | None, path: str | None) -> Node:
            if fh is not None and fh in self.handles:
                node, epoch = self.handles[fh]
                if epoch != self.epoch:
                    self.stats["refused"] += 1
                    raise FuseOSError(errno.EIO)
                return node
            if fh:  # a handle from before the cut (released meanwhile)
                self.stats["refused"] += 1
                raise FuseOSError(errno.EIO)
            if path is None:
                raise FuseOSError(errno.EBADF)
            return self._lookup(path)

        def _open_handle(self, node: Node) -> int:
            fh = self.next_fh
            self.next_fh += 1
            self.handles[fh] = (node, self.epoch)
            return fh

        def _sync_file(self, node: Node, parent: Node | None, name: str | None) -> None:
            node.synced = bytes(node.data)
            if parent is not None and name is not None and parent.entries.get(name) is node:
                parent.synced_entries[name] = node  # ext4: the creation rides in the same commit
            self.stats["fsyncs"] += 1
            if self.last_write is not None and self.last_write[0] is node:
                self.last_write = None

        # -- control (from the driving test, not from FUSE) -----------------------------

        def cut(self, *, tear: bool, pids: Iterable[int], rng: random.Random) -> dict[str, Any]:
            with self._mutex:
                torn = 0
                if tear and self.last_write is not None:
                    node, offset, data = self.last_write
                    sectors = len(data) // SECTOR
                    if sectors > 1:
                        torn = rng.randrange(1, sectors) * SECTOR
                        image = bytearray(node.synced)
                        if len(image) < offset + torn:
                            image.extend(bytes(offset + torn - len(image)))
                        image[offset : offset + torn] = data[:torn]
                        node.synced = bytes(image)
                _revert(self.root, set())
                self.epoch += 1
                self.handles.clear()
                self.fenced.update(pids)
                self.last_write = None
                self.stats["cuts"] += 1
                return {"torn": torn}

        def sync_all(self) -> None:
            with self._mutex:

                def walk(directory: Node) -> None:
                    directory.synced_entries = dict(directory.entries)
                    for child in directory.entries.values():
                        if child.is_dir:
                            walk(child)
                        else:
                            child.synced = bytes(child.data)

                walk(self.root)
                self.last_write = None

        # -- FUSE operations --------------------------------------------------------------

        def init_with_config(self, conn_info: Any, config_3: Any) -> None:
            if config_3 is not None:
                # The kernel must not answer from caches that a cut makes stale.
                for key in ("attr_timeout", "entry_timeout", "negative_timeout"):
                    setattr(config_3, key, 0.0)
                config_3.kernel_cache = 0
                config_3.auto_cache = 0
            print("ready", flush=True)

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            with self._mutex:
                node = self._handle(fh, path) if fh else self._lookup(path)
                size = len(node.data)
                return {
                    "st_mode": node.mode,
                    "st_nlink": 2 if node.is_dir else 1,
                    "st_size": size,
                    "st_blocks": (size + 511) // 512,
                    "st_blksize": 4096,
                    "st_uid": os.getuid(),
                    "st_gid": os.getgid(),
                    "st_atime": node.mtime,
                    "st_mtime": node.mtime,
                    "st_ctime": node.mtime,
                }

        def readdir(self, path: str, fh: int) -> list[str]:
            with self._mutex:
                return [".", "..", *self._lookup(path).entries]

        def opendir(self, path: str) -> int:
            with self._mutex:
                return self._open_handle(self._lookup(path))

        def releasedir(self, path: str, fh: int) -> int:
            with self._mutex:
                self.handles.pop(fh, None)
            return 0

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            with self._mutex:
                self._check_caller()
                node = self._handle(fh, path)
                node.synced_entries = dict(node.entries)
                self.stats["dirsyncs"] += 1
            return 0

        def mkdir(self, path: str, mode: int) -> int:
            with self._mutex:
                self._check_caller()
                parent, name = self._parent(path)
                if name in parent.entries:
                    raise FuseOSError(errno.EEXIST)
                parent.entries[name] = Node(stat.S_IFDIR | (mode & 0o7777))
            return 0

        def rmdir(self, path: str) -> int:
            with self._mutex:
                self._check_caller()
                parent, name = self._parent(path)
                node = self._lookup(path)
                if node.entries:
                    raise FuseOSError(errno.ENOTEMPTY)
                del parent.entries[name]
            return 0

        def create(self, path: str, mode: int, flags: int = 0) -> int:
            with self._mutex:
                self._check_caller()
                parent, name = self._parent(path)
                node = parent.entries.get(name)
                if node is None:
                    node = parent.entries[name] = Node(stat.S_IFREG | (mode & 0o7777))
                elif flags & os.O_EXCL:
                    raise FuseOSError(errno.EEXIST)
                if flags & os.O_TRUNC:
                    node.data = bytearray()
                return self._open_handle(node)

        def open(self, path: str, flags: int) -> int:
            with self._mutex:
                if flags & (os.O_WRONLY | os.O_RDWR):
                    self._check_caller()
                node = self._lookup(path)
                if flags & os.O_TRUNC:
                    node.data = bytearray()
                return self._open_handle(node)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            with self._mutex:
                node = self._handle(fh, path)
                return bytes(node.data[offset : offset + size])

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            with self._mutex:
                self._check_caller()
                node = self._handle(fh, path)
                end = offset + len(data)
                if len(node.data) < offset:
                    node.data.extend(bytes(offset - len(node.data)))
                node.data[offset:end] = data
                node.mtime = time.time_ns()
                self.last_write = (node, offset, bytes(data))
                self.stats["writes"] += 1
                return len(data)

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            with self._mutex:
                self._check_caller()
                node = self._handle(fh, path) if fh else self._lookup(path)
                if length < len(node.data):
                    del node.data[length:]
                else:
                    node.data.extend(bytes(length - len(node.data)))
                node.mtime = time.time_ns()
            return 0

        def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
            with self._mutex:
                self._check_caller()
                if mode:
                    raise FuseOSError(errno.EOPNOTSUPP)
                node = self._handle(fh, path)
                if len(node.data) < offset + size:
                    node.data.extend(bytes(offset + size - len(node.data)))
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            with self._mutex:
                self._check_caller()
                node = self._handle(fh, path)
                parent, name = (None, None)
                if path:
                    with contextlib.suppress(OSError):
                        parent, name = self._parent(path)
                self._sync_file(node, parent, name)
            return 0

        def flush(self, path: str, fh: int) -> int:
            return 0

        def release(self, path: str, fh: int) -> int:
            with self._mutex:
                self.handles.pop(fh, None)
            return 0

        def unlink(self, path: str) -> int:
            with self._mutex:
                self._check_caller()
                parent, name = self._parent(path)
                if name not in parent.entries:
                    raise FuseOSError(errno.ENOENT)
                del parent.entries[name]
            return 0

        def rename(self, old: str, new: str) -> int:
            with self._mutex:
                self._check_caller()
                old_parent, old_name = self._parent(old)
                new_parent, new_name = self._parent(new)
                node = old_parent.entries.pop(old_name, None)
                if node is None:
                    raise FuseOSError(errno.ENOENT)
                new_parent.entries[new_name] = node
            return 0

        def chmod(self, path: str, mode: int) -> int:
            with self._mutex:
                node = self._lookup(path)
                node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            with self._mutex:
                self._lookup(path).mtime = times[1] if times else time.time_ns()
            return 0

        def access(self, path: str, amode: int) -> int:
            with self._mutex:
                self._lookup(path)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            return {
                "f_bsize": 4096,
                "f_frsize": 4096,
                "f_blocks": 1 << 20,
                "f_bfree": 1 << 19,
                "f_bavail": 1 << 19,
                "f_files": 1 << 16,
                "f_ffree": 1 << 15,
                "f_namemax": 255,
            }

    return LazyOps()


def serve(mountpoint: str, image: str) -> None:
    """The server process: mount, then obey the commands on stdin until ``exit`` or EOF."""
    from mfusepy import FUSE

    image_path = Path(image)
    root = pickle.loads(image_path.read_bytes()) if image_path.exists() else Node(stat.S_IFDIR | 0o755)
    ops = _make_ops(root)
    rng = random.Random()

    def control() -> None:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            try:
                if words[0] == "cut":
                    tear = "tear" in words
                    pids = [int(w) for w in words[1:] if w.isdigit()]
                    reply: Any = ops.cut(tear=tear, pids=pids, rng=rng)
                elif words[0] == "sync":
                    ops.sync_all()
                    reply = {}
                elif words[0] == "save":
                    with ops._mutex:
                        image_path.write_bytes(pickle.dumps(ops.root))
                    reply = {}
                elif words[0] == "stats":
                    with ops._mutex:
                        reply = dict(ops.stats)
                elif words[0] == "seed":
                    rng.seed(int(words[1]))
                    reply = {}
                elif words[0] == "exit":
                    print("{}", flush=True)
                    break
                else:
                    reply = {"error": f"unknown command {words[0]!r}"}
            except Exception as exc:  # answer, never hang the driving test
                reply = {"error": repr(exc)}
            print(json.dumps(reply), flush=True)
        # A reboot: whatever still holds the mount finds it gone, and the server with it.
        subprocess.run(["fusermount3", "-u", "-z", mountpoint], check=False, capture_output=True)
        os._exit(0)

    threading.Thread(target=control, name="lazyfs-control", daemon=True).start()
    FUSE(ops, mountpoint, foreground=True, fsname="lazyfs", default_permissions=True)


class LazyFS:
    """Drives a :func:`serve` process from a test: mount, cut power, remount."""

    def __init__(self, mountpoint: Path, image: Path, *, seed: int = 0) -> None:
        self.mountpoint = Path(mountpoint)
        self.image = Path(image)
        self.seed = seed
        self._proc: subprocess.Popen[str] | None = None
        self._stopping: subprocess.Popen[str] | None = None
        self.cuts = 0
        self.remounts = 0

    def start(self) -> LazyFS:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [sys.executable, __file__, str(self.mountpoint), str(self.image)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if line.strip() != "ready":
            err = self._proc.stderr.read() if self._proc.stderr else ""
            self._proc.kill()
            raise OSError(f"lazyfs did not mount at {self.mountpoint}: {line.strip()} {err.strip()}")
        self.command(f"seed {self.seed + self.remounts}")
        return self

    def command(self, line: str) -> dict[str, Any]:
        proc = self._proc if self._proc is not None else self._stopping
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline() or '{"error": "lazyfs exited"}')
        if "error" in reply:
            raise RuntimeError(f"lazyfs {line!r}: {reply['error']}")
        return reply

    def cut(self, pids: Iterable[int] = (), *, tear: bool = False) -> dict[str, Any]:
        """Power cut: the processes ``pids`` must already be dead; what was not synced is gone."""
        self.cuts += 1
        return self.command(" ".join(["cut", *(["tear"] if tear else []), *map(str, pids)]))

    def sync_all(self) -> None:
        self.command("sync")

    def stats(self) -> dict[str, int]:
        return self.command("stats")

    def remount(self) -> None:
        """Unmount and mount again from the durable image, as after a reboot."""
        self.command("save")
        self.stop()
        self.remounts += 1
        self.start()

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc, self._stopping = None, proc
        try:
            assert proc.stdin is not None
            self.command("exit")
            proc.wait(10)
        except (OSError, RuntimeError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(5)
        subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False, capture_output=True)

    def __enter__(self) -> LazyFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
