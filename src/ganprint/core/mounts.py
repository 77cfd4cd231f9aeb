"""Which file system a path lives on, read from the kernel's mount table (/proc/self/mountinfo on Linux).

SQLite serialises writers with POSIX advisory locks; on network and cluster file systems those locks are missing,
emulated per client or not coherent between machines, so two writers can commit at once and corrupt the file
(sqlite.org/howtocorrupt.html, section 2). `network_filesystem` names such a file system so that a caller can
refuse it.
"""

from __future__ import annotations

import os
import re

MOUNTINFO = "/proc/self/mountinfo"

# Kernel file-system types (the field after " - " in mountinfo) whose files other machines can open.
NETWORK_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "smb", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs", "ncpfs",
    "coda", "orangefs", "pvfs2", "beegfs", "ocfs2", "gfs2", "davfs", "fuse.sshfs", "fuse.s3fs", "fuse.rclone",
    "fuse.gcsfuse", "fuse.glusterfs", "fuse.ceph-fuse", "fuse.cephfs", "fuse.juicefs", "fuse.davfs2",
    "fuse.goofys", "fuse.blobfuse", "fuse.blobfuse2", "fuse.mfs", "fuse.moosefs", "fuse.lizardfs",
    "fuse.seaweedfs", "fuse.objectivefs", "fuse.smbnetfs", "fuse.curlftpfs", "fuse.s3backer", "fuse.mountpoint-s3",
})

_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (\\040 ...)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def _inside(path: str, mount: str) -> bool:
    return mount == "/" or path == mount or path.startswith(mount.rstrip("/") + "/")


def filesystem_type(path: str | os.PathLike, mountinfo: str) -> str | None:
    """The type of the file system holding `path` (an absolute, resolved path) in the mount table text `mountinfo`,
    or None when no mount covers it. The deepest mount point wins, and of two at one point the later (on top)."""
    target = os.fspath(path)
    best: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        mount = _unescape(fields[4])
        if _inside(target, mount) and (best is None or len(mount) >= best[0]):
            best = (len(mount), tail[0])
    return None if best is None else best[1]


def network_filesystem(path: str | os.PathLike, mountinfo: str | None = None) -> str | None:
    """The type of the network or cluster file system that holds `path` (which need not exist yet), or None for a
    local one or when the mount table cannot be read (not Linux). `mountinfo` defaults to this process's table."""
    if mountinfo is None:
        try:
            with open(MOUNTINFO, encoding="utf-8", errors="replace") as f:
                mountinfo = f.read()
        except OSError:
            return None
    probe = os.path.abspath(os.fspath(path))
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)  # the file (or its folder) may not exist yet: its nearest existing parent
    fstype = filesystem_type(os.path.realpath(probe), mountinfo)
    return fstype if fstype in NETWORK_TYPES else None
