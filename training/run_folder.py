"""A run folder belongs to one run: its lock, its manifest, and the way its files are written.

- The lock (`.blockspec.lock`: pid, host, start time) keeps a second process out while a run
  writes the folder; a lock whose process is gone (same host) is taken over.
- The manifest (`manifest.json`) names the spec the run trains (the resolved document and train
  section, and their SHA-256) and every file blockspec wrote there, recorded before it is written.
  `--overwrite` deletes exactly those files; `--resume` needs the same spec; blockspec never
  deletes a file it did not write, and refuses a non-empty folder that holds no run.
- Every file goes through `training.files.atomic_write` (disk full -> `WriteError`).

Names from a spec never become paths raw: `run_dir_for` derives the default folder with
`safe_name` and checks that it stays inside its parent.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blockspec.training import files
from blockspec.training.errors import RunFolderError

LOCK_FILE = ".blockspec.lock"
MANIFEST_FILE = "manifest.json"
MANIFEST_KIND = "blockspec-run"
RUNS_DIR = "runs"
WORKER_DIR = re.compile(r"^worker-\d+$")  # a multi-worker run's other workers: runs of their own
NAME_LIMIT = 64
_HELD: set[str] = set()  # lock files this process holds


def safe_name(name: str) -> str:
    """A spec name as one folder name: letters, digits, `-`, `_`, `.`; no leading dot; bounded."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).lstrip(".")[:NAME_LIMIT]
    return text or "run"


def contained(parent: str | Path, child: str | Path) -> Path:
    """`parent / child`, refused unless it resolves inside `parent` (no `..`, no absolute path)."""
    base = Path(parent).resolve()
    target = (base / child).resolve()
    if target != base and base not in target.parents:
        raise RunFolderError(f"{child} would be written outside {parent}; refused")
    return Path(parent) / child


def run_dir_for(name: str, out: str | Path | None, suffix: str = "") -> Path:
    """`--out`, else `runs/<safe spec name><suffix>` (inside `runs/`, whatever the name)."""
    if out:
        return Path(out)
    return contained(RUNS_DIR, safe_name(name) + suffix)


def spec_record(document: Any, train: Any) -> dict[str, Any]:
    """What identifies a run's spec, as plain JSON values: the resolved document and train."""
    return json.loads(json.dumps({"document": document, "train": train}, default=str))


def spec_hash(record: dict[str, Any]) -> str:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def differences(old: Any, new: Any, path: str = "", limit: int = 8) -> list[str]:
    """`key: <old> in the run, <new> now` for each differing leaf, at most `limit` of them."""
    found: list[str] = []
    _diff(old, new, path, found)
    extra = len(found) - limit
    return found[:limit] + ([f"... and {extra} more"] if extra > 0 else [])


def _diff(old: Any, new: Any, path: str, found: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            sub = f"{path}.{key}" if path else str(key)
            _diff(old.get(key, "<absent>"), new.get(key, "<absent>"), sub, found)
    elif old != new:
        found.append(f"{path}: {_excerpt(old)} in the run, {_excerpt(new)} now")


def _excerpt(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def some_names(names: list[str], shown: int = 5) -> str:
    """The first `shown` of `names`, sorted, then `...` for the rest: what a folder holds."""
    names = sorted(names)
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def _older_run(path: Path) -> bool:
    """A run folder blockspec 0.1 wrote: `run.json` with a status, `spec.yaml`, no manifest."""
    try:
        info = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "status" in info and (path / "spec.yaml").is_file()


def read_record(path: Path, what: str = "") -> Any:
    """A JSON file blockspec wrote; `RunFolderError` naming it when it is missing or damaged."""
    try:
        return files.read_json(path)
    except FileNotFoundError as e:
        raise RunFolderError(f"{path} is missing{what}") from e
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError included
        raise RunFolderError(f"{path} is damaged ({type(e).__name__}: {e}){what}") from e


class RunFolder:
    """One run's folder, locked while it is open. Use `RunFolder.open` or `RunFolder.attach`.

    Attributes:
        path: the folder.
        resumable: the folder held this spec's run and `resume` was asked.
        replaced: what an earlier run left and this one cleared (a sentence), or "".
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest: dict[str, Any] = {}
        self.resumable = False
        self.replaced = ""
        self._lock: Path | None = None

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        record: dict[str, Any],
        *,
        name: str,
        resume: bool = False,
        overwrite: bool = False,
    ) -> RunFolder:
        """Lock `path` for a run of the spec `record` (`spec_record`), as the flags allow.

        A missing or empty folder starts a run. A folder of a run: `resume` continues it when
        its spec is `record` (else the differing keys are listed), `overwrite` deletes the
        files its manifest lists, and a run that kept nothing (no checkpoint, no model) is
        replaced; anything else is refused. A non-empty folder without a manifest is refused.

        Raises:
            RunFolderError: the folder is in use, another run's, not a run, or damaged.
        """
        folder = cls(path)
        if folder.path.exists() and not folder.path.is_dir():
            raise RunFolderError(f"{folder.path} is a file, not a run folder; choose another --out")
        folder.path.mkdir(parents=True, exist_ok=True)
        folder._acquire()
        try:
            folder._claim(record, name, resume, overwrite)
        except BaseException:
            folder.close()
            raise
        return folder

    @classmethod
    def attach(cls, path: str | Path) -> RunFolder:
        """Lock the folder of an existing run, to add files to it (`evaluate.json`)."""
        folder = cls(path)
        if not (folder.path / MANIFEST_FILE).is_file():
            raise RunFolderError(
                f"{folder.path} is not a run folder (it has no {MANIFEST_FILE}; "
                "`blockspec train SPEC --out DIR` writes one)"
            )
        folder._acquire()
        try:
            folder.manifest = folder._read_manifest()
        except BaseException:
            folder.close()
            raise
        return folder

    @classmethod
    def lock(cls, path: str | Path) -> RunFolder:
        """Only the lock, for a folder whose files another library writes (a search's)."""
        folder = cls(path)
        folder.path.mkdir(parents=True, exist_ok=True)
        folder._acquire()
        return folder

    def _claim(self, record: dict, name: str, resume: bool, overwrite: bool) -> None:
        files.remove_stale_temps(self.path)
        files.remove_stale_temps(self.path / "checkpoint")
        if (self.path / MANIFEST_FILE).is_file():
            old = self._read_manifest()
            same = old.get("sha256") == spec_hash(record)
            if resume and same and (self.path / "checkpoint" / "state.json").is_file():
                self.manifest = old
                self.resumable = True
                return
            if resume and not same and not overwrite:
                raise RunFolderError(self._other_spec(old, record))
            if not (overwrite or resume) and self._kept_something():
                raise RunFolderError(
                    f"{self.path} holds a run of {old.get('name')!r} "
                    f"({self._status_line()}). Continue it with --resume, replace it with "
                    "--overwrite (deletes only the files blockspec wrote there), or choose "
                    "another --out."
                )
            self.replaced = self._clear(old)
        else:
            others = [
                p.name
                for p in self.path.iterdir()
                if p.name != LOCK_FILE and not (p.is_dir() and WORKER_DIR.match(p.name))
            ]
            if others and _older_run(self.path):
                raise RunFolderError(
                    f"{self.path} holds a run of an older blockspec (before run folders had a "
                    f"{MANIFEST_FILE}): this version cannot tell which files are the run's, so it "
                    "neither resumes nor replaces it, and leaves its files as they are. Choose "
                    "another --out, or move the old run away."
                )
            if others:
                raise RunFolderError(
                    f"{self.path} is not empty and holds no blockspec run (no {MANIFEST_FILE}; "
                    f"it has {some_names(others)}). blockspec writes a run only into a new or empty folder, "
                    "and never deletes files it did not write: choose another --out."
                )
        self.manifest = {
            "kind": MANIFEST_KIND,
            "version": 1,
            "name": name,
            "sha256": spec_hash(record),
            "spec": record,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": [],
            "patterns": [],
        }
        self._save_manifest()

    def _other_spec(self, old: dict, record: dict) -> str:
        found = differences(old.get("spec", {}), record, limit=50)
        # `train` is the train section with defaults; the document's copy says the same.
        lines = [
            line.removeprefix("document.")
            for line in found
            if not line.startswith("document.train.") and not line.startswith("... and")
        ]
        shown = "; ".join(lines[:8]) + (
            f"; ... and {len(lines) - 8} more" if len(lines) > 8 else ""
        )
        epochs = any(line.startswith("train.epochs:") for line in lines)
        hint = (
            " A run cannot be resumed to another number of epochs: the schedule and the"
            " checkpoint belong to the old one."
            if epochs
            else ""
        )
        return (
            f"--resume needs the spec the run in {self.path} was trained with; this one differs"
            f" in: {shown or 'its identity'}.{hint} Resume with the same spec and --set values,"
            " start afresh with --overwrite, or choose another --out."
        )

    def _kept_something(self) -> bool:
        return (self.path / "checkpoint" / "state.json").is_file() or (
            self.path / "model.keras"
        ).is_file()

    def _status_line(self) -> str:
        try:
            info = files.read_json(self.path / "run.json")
            status = f"{info.get('status', '?')}, {info.get('epochs_done', 0)} epochs done"
        except (OSError, ValueError, AttributeError):
            status = "run.json unreadable"
        return status

    def _clear(self, old: dict) -> str:
        """Delete what the manifest lists (files, then the folders they emptied)."""
        listed = [n for n in old.get("files", []) if isinstance(n, str)]
        patterns = [p for p in old.get("patterns", []) if isinstance(p, str)]
        removed = 0
        for rel in listed + self._matching(patterns):
            target = contained(self.path, rel)
            if target.is_file() or target.is_symlink():
                target.unlink()
                removed += 1
        for rel in sorted({str(Path(n).parent) for n in listed + patterns}, key=len, reverse=True):
            for parent in [Path(rel), *Path(rel).parents]:
                if str(parent) in ("", "."):
                    continue
                try:
                    contained(self.path, parent).rmdir()  # only when empty
                except OSError:
                    pass
        return f"removed {removed} file(s) of the earlier run of {old.get('name')!r}"

    def _matching(self, patterns: list[str]) -> list[str]:
        found = []
        for pattern in patterns:
            top = contained(self.path, Path(pattern).parts[0])
            if not top.is_dir():
                continue
            for f in top.rglob("*"):
                rel = f.relative_to(self.path).as_posix()
                if f.is_file() and fnmatch.fnmatch(rel, pattern):
                    found.append(rel)
        return found

    def _read_manifest(self) -> dict[str, Any]:
        hint = (
            "; blockspec cannot tell which files it wrote there, so it will neither resume nor"
            " clear it: choose another --out"
        )
        manifest = read_record(self.path / MANIFEST_FILE, hint)
        if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
            raise RunFolderError(f"{self.path / MANIFEST_FILE} is not a blockspec manifest{hint}")
        return manifest

    # -- the lock ------------------------------------------------------------------------------

    def _acquire(self) -> None:
        lock = self.path / LOCK_FILE
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        for _ in range(5):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(lock)
                if holder is not None and not _stale(holder, lock):
                    raise RunFolderError(
                        f"{self.path} is in use by another blockspec run (pid "
                        f"{holder.get('pid')} on {holder.get('host')}, since "
                        f"{holder.get('since')}). Wait for it to end, or choose another --out. "
                        f"(If that run is gone, delete {lock}.)"
                    ) from None
                lock.unlink(missing_ok=True)  # the holder is gone: take it over
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._lock = lock
            _HELD.add(str(lock.resolve()))
            return
        raise RunFolderError(f"could not lock {self.path} ({lock} keeps changing)")

    def close(self) -> None:
        """Release the lock (idempotent)."""
        if self._lock is not None:
            _HELD.discard(str(self._lock.resolve()))
            self._lock.unlink(missing_ok=True)
            self._lock = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- files ---------------------------------------------------------------------------------

    def file(self, rel: str) -> Path:
        """The path of `rel` in the folder, recorded in the manifest before anything writes it."""
        target = contained(self.path, rel)
        rel = Path(rel).as_posix()
        if rel not in self.manifest["files"]:
            self.manifest["files"].append(rel)
            self._save_manifest()
        return target

    def own(self, pattern: str) -> None:
        """Record that files matching `pattern` (relative, fnmatch) are written by this run."""
        if pattern not in self.manifest["patterns"]:
            self.manifest["patterns"].append(pattern)
            self._save_manifest()

    def remove(self, rel: str) -> None:
        """Delete a file this run wrote, and forget it."""
        contained(self.path, rel).unlink(missing_ok=True)
        if rel in self.manifest["files"]:
            self.manifest["files"].remove(rel)
            self._save_manifest()

    def write(
        self, rel: str, write: Callable[[str], None], suffix: str = "", size: int | None = None
    ) -> Path:
        return files.atomic_write(self.file(rel), write, suffix=suffix, size=size)

    def write_weights(self, rel: str, model) -> Path:
        return files.write_weights(self.file(rel), model)

    def write_bytes(self, rel: str, data: bytes) -> Path:
        return files.write_bytes(self.file(rel), data)

    def write_json(self, rel: str, value: Any) -> Path:
        return files.write_json(self.file(rel), value)

    def write_text(self, rel: str, text: str) -> Path:
        return files.write_text(self.file(rel), text)

    def write_csv(self, rel: str, header: list[str], rows: list[list[Any]]) -> Path:
        return files.write_csv(self.file(rel), header, rows)

    def _save_manifest(self) -> None:
        files.write_json(self.path / MANIFEST_FILE, self.manifest)


def _read_lock(lock: Path) -> dict[str, Any] | None:
    """The holder a lock file names; None when it is unreadable and older than a few seconds."""
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
        if isinstance(holder, dict):
            return holder
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        pass
    try:  # a lock being written right now reads empty: count it held for a moment
        young = time.time() - lock.stat().st_mtime < 5.0
    except OSError:
        return None
    return {"pid": "?", "host": "?", "since": "just now"} if young else None


def _stale(holder: dict[str, Any], lock: Path) -> bool:
    """The holder's process is gone: same host and no such pid (or this process, not holding)."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return str(lock.resolve()) not in _HELD
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, another user's
        return False
    return False
