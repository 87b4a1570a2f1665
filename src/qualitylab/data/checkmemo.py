"""Remembering which contract checks a dataset's tables fail, so the checking pass runs once.

Two places hold the answer. For tables read from files, a small JSON memo per
table in :func:`check_memo_dir`, keyed by each file's path, size and
modification time, the contract's checks and the known markets. For a DuckDB
database written with its answer (the runner's market caches), the table
:data:`CHECKS_TABLE` inside it (:func:`stored_checks`), trusted while each table
keeps the row count recorded there (see ``Dataset.check_results``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from ibis.backends import BaseBackend

_CHECK_MEMO_VERSION = 1  # bump when the meaning of a check changes
#: Table of a DuckDB database recording which contract checks its tables fail,
#: written with the data (see ``Dataset.check_results``); the runner's market
#: caches carry it, so each notebook opening one skips the checking pass.
CHECKS_TABLE = "ql_contract_checks"


def check_memo_dir() -> Path | None:
    """Where datasets remember which contract checks their files fail.

    ``$QUALITYLAB_CACHE_DIR`` (``off`` disables the memo), else
    ``$XDG_CACHE_HOME/qualitylab`` or ``~/.cache/qualitylab``. The memo holds
    no data: one small JSON file of check names and true/false per table
    and file fingerprint.

    Examples
    --------
    >>> import os
    >>> saved = os.environ.get("QUALITYLAB_CACHE_DIR")
    >>> os.environ["QUALITYLAB_CACHE_DIR"] = "off"
    >>> check_memo_dir() is None
    True
    >>> os.environ["QUALITYLAB_CACHE_DIR"] = "/tmp/qlcache"
    >>> check_memo_dir().as_posix()
    '/tmp/qlcache/checks'
    >>> if saved is None:
    ...     del os.environ["QUALITYLAB_CACHE_DIR"]
    ... else:
    ...     os.environ["QUALITYLAB_CACHE_DIR"] = saved
    """
    env = os.environ.get("QUALITYLAB_CACHE_DIR", "").strip()
    if env.lower() in ("off", "0", "none", "false"):
        return None
    if env:
        return Path(env).expanduser() / "checks"
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "qualitylab" / "checks"


def files_fingerprint(location: str | None) -> list[str] | None:
    """Path, size and mtime of every file behind a location (None: not files)."""
    if not location:
        return None
    path = Path(location)
    try:
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file())
        elif path.is_file():
            files = [path]
        else:
            return None
        out = []
        for f in files:
            st = f.stat()
            out.append(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}")
        return out
    except OSError:
        return None


def check_memo_path(
    locations: Mapping[str, str],
    name: str,
    keys: list[tuple[str, str, str]],
    markets: list[str],
    assume_utc: bool,
) -> Path | None:
    """The memo file of a table's checks, keyed by its files (None: not files, or off)."""
    folder = check_memo_dir()
    if folder is None or not keys:
        return None
    tables = [name, "decisions"] if name == "qa_audits" else [name]  # audits check decisions
    prints = []
    for t in tables:
        fp = files_fingerprint(locations.get(t))
        if fp is None:
            return None
        prints.append(fp)
    payload = json.dumps(
        {
            "version": _CHECK_MEMO_VERSION,
            "table": name,
            "files": prints,
            "checks": [repr(k) for k in keys],
            "markets": markets,
            "assume_utc": assume_utc,
        },
        sort_keys=True,
    )
    return folder / f"{name}-{hashlib.sha256(payload.encode()).hexdigest()[:32]}.json"


def read_check_memo(path: Path | None) -> dict[str, bool] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_check_memo(path: Path, failing: dict[str, bool]) -> None:
    try:  # best effort: a read-only home just means the pass runs again
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(failing, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def stored_checks(con: BaseBackend) -> dict[str, tuple[int, dict[str, bool]]]:
    """The ``CHECKS_TABLE`` of a database, per table (empty when unreadable)."""
    try:
        frame = con.table(CHECKS_TABLE).to_pandas()
        out: dict[str, tuple[int, dict[str, bool]]] = {}
        for name, part in frame.groupby("table", sort=False):
            counts = set(part["rows"].astype("int64"))
            if len(counts) == 1:
                failing = dict(
                    zip(part["check"].astype(str), part["failing"].astype(bool), strict=True)
                )
                out[str(name)] = (int(counts.pop()), failing)
        return out
    except Exception:  # not ours, or another layout: the checks run as usual
        return {}
