"""A lock on a workdir: one run at a time writes into it.

Two processes in one workdir used to both exit 0 while interleaving ``metrics.jsonl`` and
overwriting each other's checkpoints. :class:`WorkdirLock` refuses the second one, naming the
holder's PID, host and start time.

Mechanism: ``fcntl.flock`` on ``DIR/.lock`` (standard library), plus a JSON record
``{"pid", "host", "started"}`` in that file. flock is the well-kept choice here: the kernel
releases it when its holder dies however it dies (kill -9, OOM, a lost node), so a dead run
never blocks the next one, and there is no PID/TTL race as with a bare "lock file exists"
convention. The JSON serves only the messages: it names the holder in a refusal, and when the
lock is taken while the file still names another process (which then ended without releasing
it, e.g. killed), the takeover is logged with that process's PID and host and whether it is
still alive on this host.

flock works on local file systems and on NFSv4 (through POSIX locks); the lock is taken by the
main process of a multi-host run only (the other hosts write no run files of their own).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket

from absl import logging

LOCK_FILE = ".lock"


class WorkdirLockedError(RuntimeError):
    """Another live process holds the workdir's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class WorkdirLock:
    """Exclusive lock of ``workdir`` for the lifetime of a ``with`` block (or acquire/release).

    Args:
      workdir: the run folder (must exist).

    Raises (on acquire):
      WorkdirLockedError: another process holds it (its PID, host and start time named).
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self._fd: int | None = None

    def _read_holder(self, fd: int) -> dict:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            raw = os.read(fd, 4096)
            return json.loads(raw.decode() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        """Takes the lock (non-blocking); logs a takeover of a lock left by an ended process."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise WorkdirLockedError(
                f"{os.path.dirname(self.path)} is in use by another run: PID "
                f"{holder.get('pid', '?')} on host {holder.get('host', '?')} (started "
                f"{holder.get('started', '?')}) holds {self.path}. Wait for it to end, stop it, "
                "or use another --workdir.") from None
        old = self._read_holder(fd)
        host = socket.gethostname()
        if old.get("pid") and old.get("pid") != os.getpid():
            state = ("no longer running" if old.get("host") == host and
                     not _pid_alive(int(old["pid"])) else "not holding it any more")
            logging.warning("took over the lock %s left by PID %s on host %s (started %s; %s).",
                            self.path, old.get("pid"), old.get("host"), old.get("started"),
                            state)
        record = {"pid": os.getpid(), "host": host,
                  "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                      timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Empties the record and releases the lock (a second call does nothing)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
