"""The history database: runs and their rows through SQLAlchemy Core, so SQLite (one file) and PostgreSQL (a
team's server) hold the same schema. The schema is versioned (``optbench_meta.schema``) and migrated forward on
open; a database made by a newer optbench is refused. Every write is one transaction: a run killed mid-write
leaves whole rows or none."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optbench.clock as clock
from optbench.errors import OptbenchError

SCHEMA = 1
ENV = "OPTBENCH_HISTORY"
UID_FILE = "history.json"  # in a run directory: the run's id in the history (a resumed run appends to it)
LOCK_WAIT_S = 30.0  # how long a write waits for another process's (SQLite: two runs writing at once)
SCHEMA_LOCK = 0x6F707462  # PostgreSQL advisory lock: one process creates or migrates the schema at a time
TABLES = ("optbench_meta", "optbench_runs", "optbench_rows")


class HistoryUnavailable(OptbenchError):
    """The history database cannot be used now: locked, read-only, unreachable, or not optbench's. Where the
    history is not the command's point (a run), the command goes on without it."""


def history_url(explicit: str | None = None) -> str | None:
    """The database to use: ``explicit`` (``--history-db``), else ``$OPTBENCH_HISTORY``, else the user's SQLite
    file; None when history is off (``off``, ``0``, ``none``). A plain path is an SQLite file."""
    value = explicit if explicit is not None else os.environ.get(ENV)
    if value is None:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "optbench"
        value = str(base / "history.sqlite")
    if value.strip().lower() in ("off", "0", "none", "no", ""):
        return None
    if "://" in value:
        parse_url(value)  # a malformed URL is one line before anything opens
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def safe_url(url: str) -> str:
    """The URL with its password masked (``***``), whether or not it parses."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", url)


def parse_url(url: str) -> Any:
    """The SQLAlchemy URL of ``url``; one line naming what is wrong (a port that is not a number)."""
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
    except ImportError:
        return None
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as e:
        why = "its port is not a number" if "int()" in str(e) else str(e).splitlines()[0][:160]
        raise OptbenchError(f"history database {safe_url(url)}: not a database URL: {why}") from None


def _tables():
    import sqlalchemy as sa

    md = sa.MetaData()
    meta = sa.Table("optbench_meta", md, sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))
    runs = sa.Table(
        "optbench_runs", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(64), unique=True, nullable=False),
        sa.Column("spec_name", sa.String(200), index=True, nullable=False),
        sa.Column("spec_digest", sa.String(64)),
        sa.Column("mode", sa.String(16)),
        sa.Column("run_dir", sa.Text),
        sa.Column("started_at", sa.Float, index=True),  # epoch seconds, UTC
        sa.Column("machine", sa.String(400)),  # CPU, its count and GPUs: series never mix machines
        sa.Column("versions", sa.String(64)),  # digest of every library and runtime version
        sa.Column("commit", sa.String(80)),
        sa.Column("env", sa.Text),
    )
    rows = sa.Table(
        "optbench_rows", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("optbench_runs.id", ondelete="CASCADE"), index=True,
                  nullable=False),
        sa.Column("variant_id", sa.String(400), index=True, nullable=False),
        sa.Column("status", sa.String(16)),
        sa.Column("row", sa.Text, nullable=False),  # the whole row as JSON: whatever columns rows have
        sa.UniqueConstraint("run_id", "variant_id"),
    )
    return md, meta, runs, rows


def machine_of(env: dict) -> str:
    gpus = ", ".join(g.get("name", "?") for g in env.get("gpus") or []) or "no GPU"
    return f"{env.get('cpu', '?')} x{env.get('cpu_count', '?')}; {gpus}"


def versions_of(env: dict) -> str:
    libs = {**(env.get("libraries") or {}), **(env.get("runtimes") or {}), "python": env.get("python")}
    return hashlib.sha256(json.dumps(libs, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Point:
    """One variant's row in one run, with what the run was."""
    run: int  # ordinal of the run in the history (by start time)
    uid: str
    started_at: float
    machine: str
    versions: str
    commit: str | None
    row: dict


@dataclass
class Imported:
    """What ``history import`` stored of one run directory: the run's id, its rows, the rows left out (which, and
    why), and a note where the directory's uid belonged to another directory's run."""
    run_id: int
    rows: int
    skipped: list[tuple[str, str]]
    note: str | None = None


def own_uid(uid: str, run_dir: str | None) -> str:
    """The uid of a run whose carried ``uid`` another directory's run holds: made of both, the same each time."""
    return hashlib.sha256(f"{uid}\n{run_dir}".encode()).hexdigest()[:32]


def _same_dir(stored: str | None, given: str | None) -> bool:
    """Whether a run stored from directory ``stored`` is the run of ``given`` (an absolute path); runs recorded
    before paths were made absolute stored them as given on the command line."""
    if stored == given:
        return True
    if stored is None or given is None:
        return False
    return not Path(stored).is_absolute() and Path(given).parts[-len(Path(stored).parts):] == Path(stored).parts


def _reason(e: Exception) -> str:
    """A database error's first line, with what to do where it is a known state."""
    orig = getattr(e, "orig", None)
    text = (str(orig if orig is not None else e).strip().splitlines() or [type(e).__name__])[0][:200]
    if "database is locked" in text:
        return f"{text} (another process held it for {LOCK_WAIT_S:g} s)"
    return text


def _one_line(method):
    """A database error in ``method`` is one line naming the database (:class:`HistoryUnavailable`)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        import sqlalchemy as sa

        try:
            return method(self, *args, **kwargs)
        except sa.exc.SQLAlchemyError as e:
            raise HistoryUnavailable(f"history database {self.safe_url}: {_reason(e)}") from None
    return wrapper


class History:
    """The history database at ``url``. ``create``: a command that writes makes the schema where there is none; a
    reading one (``create=False``) writes nothing to a database that is not optbench's, and finds no runs in a
    database that does not exist yet."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        import sqlalchemy as sa

        self.url = url
        self.empty = False  # a reading command on a database optbench never wrote: no runs, nothing created
        parsed = parse_url(url)
        kw: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"timeout": LOCK_WAIT_S}  # two runs writing at once wait for each other
            path = Path(parsed.database) if parsed is not None and parsed.database else None
            if path is not None and not path.exists():
                if not create:
                    self.empty = True
                    return
                path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = sa.create_engine(url, **kw)
        except (sa.exc.SQLAlchemyError, ImportError) as e:
            raise OptbenchError(f"history database {self.safe_url}: {str(e).splitlines()[0][:200]}") from None
        self.md, self.meta, self.runs, self.rows = _tables()
        self._open(create)

    @property
    def safe_url(self) -> str:
        return safe_url(self.url)

    # ---------------------------------------------------------------- schema
    @_one_line
    def _open(self, create: bool) -> None:
        """The schema made or migrated; two processes doing it at once on a fresh database both succeed (an
        advisory lock on PostgreSQL; a retry where the other won the race)."""
        import sqlalchemy as sa

        for attempt in range(3):
            try:
                return self._migrate(create)
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError) as e:
                if attempt == 2 or "exist" not in str(e).lower() and not isinstance(e, sa.exc.IntegrityError):
                    raise

    def _migrate(self, create: bool) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as c:
            if c.dialect.name == "postgresql":
                c.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
            tables = set(sa.inspect(c).get_table_names())
            if "optbench_meta" not in tables:
                if mine := sorted(set(TABLES) & tables):
                    raise HistoryUnavailable(f"history database {self.safe_url} holds {', '.join(mine)} but no "
                                             f"optbench_meta: not a history optbench made; give another database")
                if not create:
                    if tables:
                        raise HistoryUnavailable(
                            f"history database {self.safe_url} is not optbench's (it holds {', '.join(sorted(tables)[:5])}"
                            f"{', ...' if len(tables) > 5 else ''}); a reading command adds nothing to it; give the "
                            f"history's database")
                    self.empty = True
                    return
            self.meta.create(c, checkfirst=True)
            found = c.execute(sa.select(self.meta.c.value).where(self.meta.c.key == "schema")).scalar()
            try:
                version = int(found) if found else 0
            except ValueError:
                raise HistoryUnavailable(f"history database {self.safe_url}: its schema value {str(found)[:40]!r} is "
                                         f"not a number: not a history optbench made, or a damaged one") from None
            if version > SCHEMA:
                raise OptbenchError(f"history database {self.safe_url} has schema {version}, newer than this "
                                    f"optbench's {SCHEMA}: upgrade optbench, or point OPTBENCH_HISTORY elsewhere")
            for step in range(version + 1, SCHEMA + 1):
                MIGRATIONS[step](self, c)
            if version != SCHEMA:
                if found:
                    c.execute(self.meta.update().where(self.meta.c.key == "schema").values(value=str(SCHEMA)))
                else:
                    c.execute(self.meta.insert().values(key="schema", value=str(SCHEMA)))

    # ---------------------------------------------------------------- writing
    @_one_line
    def record_run(self, uid: str, spec: dict, env: dict, run_dir: Path | None, mode: str,
                   started_at: float | None = None) -> int:
        """The run's id, made on its first call (one transaction); a resumed run finds its own. A uid already
        stored for another directory (a copied run directory, a history.json carried from elsewhere) never names
        that run: this one becomes a run of its own, under a uid made of both (found again on later calls)."""
        import sqlalchemy as sa

        where = str(run_dir) if run_dir else None
        with self.engine.begin() as c:
            def stored(key: str):
                return c.execute(sa.select(self.runs.c.id, self.runs.c.run_dir).where(self.runs.c.uid == key)).first()

            got = stored(uid)
            if got is not None and not _same_dir(got.run_dir, where):
                uid = own_uid(uid, where)
                got = stored(uid)
            if got is not None:
                return int(got.id)
            spec_text = json.dumps(spec, sort_keys=True, default=str)
            res = c.execute(self.runs.insert().values(
                uid=uid, spec_name=str(spec.get("name") or "?")[:200], mode=mode,
                spec_digest=hashlib.sha256(spec_text.encode()).hexdigest()[:16], run_dir=where,
                started_at=started_at if started_at is not None else clock.wall(),
                machine=machine_of(env)[:400], versions=versions_of(env), commit=str(env.get("commit") or "")[:80] or None,
                env=json.dumps(env, default=str)))
            return int(res.inserted_primary_key[0])

    @_one_line
    def record_row(self, run_id: int, row: dict) -> None:
        """One variant's row, in one transaction (a variant run again by --resume replaces its row)."""
        from optbench.store import row_json

        text = row_json(row)
        with self.engine.begin() as c:
            c.execute(self.rows.delete().where((self.rows.c.run_id == run_id)
                                               & (self.rows.c.variant_id == row["variant_id"])))
            c.execute(self.rows.insert().values(run_id=run_id, variant_id=row["variant_id"],
                                                status=row.get("status"), row=text))

    @_one_line
    def stored_variants(self, run_id: int) -> set[str]:
        """The variant ids this run has rows for."""
        import sqlalchemy as sa

        with self.engine.connect() as c:
            return {v for (v,) in c.execute(sa.select(self.rows.c.variant_id).where(self.rows.c.run_id == run_id))}

    def import_run(self, run_dir: Path) -> Imported:
        """A run directory's final rows, once: its uid file, or a digest of its path and first rows, keeps a
        second import from duplicating it, and a uid another directory's run holds makes a run of its own (see
        :meth:`record_run`). Every file is checked first; a bad row is left out with its reason."""
        from optbench.history.rundir import read_run_dir

        run_dir = Path(run_dir)
        run = read_run_dir(run_dir)
        where = run_dir.resolve()
        uid = run.uid or hashlib.sha256((str(where) + json.dumps(sorted(run.rows))[:2000]).encode()).hexdigest()[:32]
        before = self.run_of(uid)
        note = None
        if before is not None and not _same_dir(before.get("run_dir"), str(where)):
            note = (f"its history.json names the run of {before.get('run_dir') or 'another directory'}; "
                    f"stored as a run of its own")
        rows = run.rows
        mode = "build" if rows and all(r.get("status") in ("built", "skipped") for r in rows.values()) else "run"
        run_id = self.record_run(uid, run.spec, run.env, where, mode, started_at=run.started_at)
        for row in rows.values():
            self.record_row(run_id, row)
        return Imported(run_id, len(rows), run.skipped, note)

    # ---------------------------------------------------------------- reading
    @_one_line
    def spec_names(self) -> list[str]:
        import sqlalchemy as sa

        if self.empty:
            return []
        with self.engine.connect() as c:
            return sorted(r[0] for r in c.execute(sa.select(self.runs.c.spec_name).distinct()))

    @_one_line
    def points(self, spec_name: str, variant: str = "*", before: str | None = None) -> dict[str, list[Point]]:
        """Per variant id (an fnmatch pattern), its rows over the spec's runs in start order; ``before``: only
        runs that started before the run with that uid."""
        import fnmatch

        import sqlalchemy as sa

        from optbench.store import restore_row

        if self.empty:
            return {}
        r, w = self.runs, self.rows
        with self.engine.connect() as c:
            order = [x for x in c.execute(sa.select(r.c.uid, r.c.started_at).where(r.c.spec_name == spec_name)
                                          .order_by(r.c.started_at, r.c.id))]
            limit = None
            if before is not None:
                limit = next((t for u, t in order if u == before), None)
            ordinal = {u: i for i, (u, _) in enumerate(order)}
            q = (sa.select(r.c.uid, r.c.started_at, r.c.machine, r.c.versions, r.c.commit, w.c.variant_id, w.c.row)
                 .join(w, w.c.run_id == r.c.id).where(r.c.spec_name == spec_name)
                 .order_by(r.c.started_at, r.c.id))
            out: dict[str, list[Point]] = {}
            for uid, started, machine, versions, commit, vid, text in c.execute(q):
                if not fnmatch.fnmatch(vid, variant):
                    continue
                if before is not None and (uid == before or (limit is not None and started >= limit)):
                    continue
                out.setdefault(vid, []).append(Point(ordinal[uid], uid, started, machine, versions, commit,
                                                     restore_row(json.loads(text))))
        return out

    @_one_line
    def run_of(self, uid: str) -> dict | None:
        import sqlalchemy as sa

        if self.empty:
            return None
        with self.engine.connect() as c:
            got = c.execute(sa.select(self.runs).where(self.runs.c.uid == uid)).mappings().first()
        return dict(got) if got else None

    @_one_line
    def counts(self) -> tuple[int, int]:
        import sqlalchemy as sa

        if self.empty:
            return 0, 0
        with self.engine.connect() as c:
            return (int(c.execute(sa.select(sa.func.count()).select_from(self.runs)).scalar()),
                    int(c.execute(sa.select(sa.func.count()).select_from(self.rows)).scalar()))


def _schema_1(h: History, c) -> None:
    h.md.create_all(c, checkfirst=True)


MIGRATIONS = {1: _schema_1}


def read_uid(run_dir: Path) -> str | None:
    try:
        return json.loads((Path(run_dir) / UID_FILE).read_text())["uid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_uid(run_dir: Path) -> str:
    """The run directory's id in the history, made on its first run (a resumed run keeps it)."""
    uid = read_uid(run_dir)
    if uid is None:
        uid = uuid.uuid4().hex
        (Path(run_dir) / UID_FILE).write_text(json.dumps({"uid": uid}))
    return uid


def open_history(url: str | None = None, *, required: bool = False, create: bool = False) -> History | None:
    """The history database at ``url`` (or where :func:`history_url` says); None when history is off or its
    library is missing, unless ``required`` (the ``history`` command): then one clear error. ``create``: the
    command writes (a run, an import) and makes the schema where there is none; a reading one writes nothing."""
    target = history_url(url)
    if target is None:
        if required:
            raise OptbenchError(f"history is off ({ENV}={os.environ.get(ENV)!r}); set {ENV} to a path or URL")
        return None
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        if required:
            raise OptbenchError("the history needs SQLAlchemy: pip install -e '.[history]'") from None
        return None
    return History(target, create=create)
