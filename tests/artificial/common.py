"""Helpers shared by the artificial-fingerprint tests."""

from __future__ import annotations

import hashlib
import re

LINE = re.compile(r"^(\S.*) ([01]{8})$")
ROW_KEYS = {"name", "bits", "bit_accuracy", "matches", "p_value", "log10_p", "detected"}


def digest(root):
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def fingerprint_lines(path):
    lines = path.read_text().splitlines()
    for line in lines:
        assert LINE.match(line), line
    return dict(line.rsplit(" ", 1) for line in lines)
