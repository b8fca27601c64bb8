"""Run directories are complete or absent: written under a hidden temporary name, renamed when done."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path


def nearest_existing(path: str | os.PathLike) -> Path:
    """``path`` itself or its closest ancestor that exists: where a new folder there would be created."""
    probe = Path(path)
    while not probe.exists():
        probe = probe.parent
    return probe


def check_out_dir(path: str | os.PathLike) -> Path:
    """Fail before any work if ``path`` cannot become a new run directory."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"output directory {path} already exists and is not empty; choose another --out or remove it")
    probe = nearest_existing(path.parent if str(path.parent) else Path("."))
    if not probe.is_dir():
        raise NotADirectoryError(f"cannot create output directory {path}: {probe} is a file, not a folder; "
                                 "choose another --out")
    if not os.access(probe, os.W_OK):
        raise PermissionError(f"cannot write under {probe}: choose an --out in a writable place")
    return path


def write_run_dir(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)`` then rename ``tmp_dir`` to ``path``; on any error nothing is left behind."""
    path = check_out_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        if path.exists():  # an empty directory the user created beforehand
            path.rmdir()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def slug(text: str) -> str:
    """A short file-name-safe form of a prompt: ``"Two red circles!"`` -> ``"two-red-circles"``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "run"
