"""Compiled kernels on disk: NVRTC cubins and the cuda-emulator's shared objects.

A cache entry is two files in a private folder: the payload (``<stem><suffix>``) and its
metadata (``<stem>.json``) holding, among the caller's fields, the payload's SHA-256. The stem
already hashes everything that changes the build (source, headers, options, compiler), so a
hit can only be stale through corruption or a foreign file: the hash is checked on every load and
a mismatch is a miss (the caller compiles again and overwrites it), never a load.

Folders are created 0700 (a cubin or a shared object is code this process will run); files are
written to a temporary name in the same folder and renamed, so a reader never sees half a file
and two processes compiling the same entry both leave a whole one.
"""
import hashlib
import json
import os
import pathlib
import tempfile
import threading

_tmp_root = None
_tmp_lock = threading.Lock()


def temporary_root():
    """One private temporary folder per process (the fallback, and the 'off' setting)."""
    global _tmp_root
    with _tmp_lock:
        if _tmp_root is None:
            _tmp_root = tempfile.mkdtemp(prefix="gpuconv-kernels-")
        return pathlib.Path(_tmp_root)


def root_from_env(env_var, default_subdir):
    """``$env_var``, ``~/.cache/gpuconv/<default_subdir>``, or a temporary folder ('off', '0', 'none')."""
    setting = os.environ.get(env_var)
    if setting is None or setting == "":
        return pathlib.Path.home() / ".cache" / "gpuconv" / default_subdir
    if setting.lower() in ("off", "0", "none"):
        return temporary_root()
    return pathlib.Path(setting)


def ensure_private_dir(path):
    path = pathlib.Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        if path.stat().st_uid == os.getuid():
            os.chmod(path, 0o700)
    except OSError:
        pass
    return path


def write_atomic(path, data):
    path = pathlib.Path(path)
    ensure_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def load(root, stem, suffix):
    """(payload path, metadata dict) of a verified entry, or None."""
    root = pathlib.Path(root)
    try:
        meta = json.loads((root / f"{stem}.json").read_text())
        payload = root / f"{stem}{suffix}"
        if not isinstance(meta, dict) or meta.get("sha256") != sha256(payload.read_bytes()):
            return None
        return payload, meta
    except (OSError, ValueError):
        return None


def store(root, stem, suffix, payload, meta):
    """Write an entry; returns the payload's path. Falls back to the temporary folder when
    ``root`` is not writable (an unwritable cache must not break a run)."""
    record = dict(meta, sha256=sha256(payload))
    last = None
    for folder in (pathlib.Path(root), temporary_root()):
        try:
            write_atomic(folder / f"{stem}{suffix}", payload)
            write_atomic(folder / f"{stem}.json", json.dumps(record).encode())
            return folder / f"{stem}{suffix}"
        except OSError as e:
            last = e
    raise OSError(f"could not write the compiled kernel {stem}{suffix} to {root} or a temporary folder: {last}")
