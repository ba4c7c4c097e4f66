"""Atomic outputs: write into a temporary sibling, then rename into place."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _ordinary_permissions(path: Path) -> None:
    """Give path (and, for a folder, what is in it) the permissions a plain open()/mkdir() would:
    temporary files and folders are private (0600/0700), and so are the files some writers
    (safetensors) create, but an output is meant to be shared like any other file."""
    mask = _umask()
    if path.is_dir():
        for p in path.rglob("*"):
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)
        os.chmod(path, 0o777 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


def replaceable_folder(folder: Path) -> bool:
    """Whether an output may replace folder: it is empty, or it is a model folder (its
    config.json names architectures and it has no subfolders), e.g. an earlier output. Anything
    else (a project, a home folder) is never deleted by a typo in an output path."""
    import json
    entries = list(folder.iterdir())
    if not entries:
        return True
    if any(e.is_dir() for e in entries):
        return False
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("architectures"), list)


@contextlib.contextmanager
def atomic_output_dir(out_dir):
    """Yield a temporary folder beside out_dir; on success it replaces out_dir in one rename.

    On any error the temporary folder is removed and out_dir is left as it was. An existing
    out_dir is replaced only when it is empty or a model folder (replaceable_folder)."""
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and not replaceable_folder(out_dir):
        raise FileExistsError(
            f"{out_dir} exists and is not a model folder; slmkit replaces only an empty folder or "
            f"a model folder (config.json naming its architectures, no subfolders). Choose a new "
            f"output path, or remove that folder yourself")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        yield tmp
        _ordinary_permissions(tmp)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_output_file(path):
    """Yield a temporary path beside `path`; renamed onto it on success, removed on failure."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _ordinary_permissions(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
