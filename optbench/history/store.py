"""The history database: runs and their rows through SQLAlchemy Core, so SQLite (one file) and PostgreSQL (a
team's server) hold the same schema. The schema is versioned (``optbench_meta.schema``) and migrated forward on
open; a database made by a newer optbench is refused. Every write is one transaction: a run killed mid-write
leaves whole rows or none."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optbench.measure.clock as clock
from optbench.errors import OptbenchError

SCHEMA = 1
ENV = "OPTBENCH_HISTORY"
UID_FILE = "history.json"  # in a run directory: the run's id in the history (a resumed run appends to it)


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
        return value
    path = Path(value).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


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


class History:
    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.url = url
        kw: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"timeout": 30}  # two runs writing at once wait for each other
        try:
            self.engine = sa.create_engine(url, **kw)
            self.md, self.meta, self.runs, self.rows = _tables()
            self._migrate()
        except sa.exc.SQLAlchemyError as e:
            raise OptbenchError(f"history database {self.safe_url}: {str(e).splitlines()[0][:200]}") from None

    @property
    def safe_url(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    # ---------------------------------------------------------------- schema
    def _migrate(self) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as c:
            self.meta.create(c, checkfirst=True)
            found = c.execute(sa.select(self.meta.c.value).where(self.meta.c.key == "schema")).scalar()
            version = int(found) if found else 0
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
    def record_run(self, uid: str, spec: dict, env: dict, run_dir: Path | None, mode: str,
                   started_at: float | None = None) -> int:
        """The run's id, made on its first call (one transaction); a resumed run finds its own."""
        import sqlalchemy as sa

        with self.engine.begin() as c:
            got = c.execute(sa.select(self.runs.c.id).where(self.runs.c.uid == uid)).scalar()
            if got is not None:
                return int(got)
            spec_text = json.dumps(spec, sort_keys=True, default=str)
            res = c.execute(self.runs.insert().values(
                uid=uid, spec_name=str(spec.get("name") or "?"), mode=mode,
                spec_digest=hashlib.sha256(spec_text.encode()).hexdigest()[:16],
                run_dir=str(run_dir) if run_dir else None,
                started_at=started_at if started_at is not None else clock.wall(),
                machine=machine_of(env), versions=versions_of(env), commit=env.get("commit"),
                env=json.dumps(env, default=str)))
            return int(res.inserted_primary_key[0])

    def record_row(self, run_id: int, row: dict) -> None:
        """One variant's row, in one transaction (a variant run again by --resume replaces its row)."""
        from optbench.store import row_json

        text = row_json(row)
        with self.engine.begin() as c:
            c.execute(self.rows.delete().where((self.rows.c.run_id == run_id)
                                               & (self.rows.c.variant_id == row["variant_id"])))
            c.execute(self.rows.insert().values(run_id=run_id, variant_id=row["variant_id"],
                                                status=row.get("status"), row=text))

    def stored_variants(self, run_id: int) -> set[str]:
        """The variant ids this run has rows for."""
        import sqlalchemy as sa

        with self.engine.connect() as c:
            return {v for (v,) in c.execute(sa.select(self.rows.c.variant_id).where(self.rows.c.run_id == run_id))}

    def import_run(self, run_dir: Path) -> tuple[int, int]:
        """A run directory's final rows, once (its uid file, or a digest of its path and first row, keeps a
        second import from duplicating it): (run id, rows)."""
        import yaml

        from optbench.store import final_rows

        run_dir = Path(run_dir)
        if not (run_dir / "results.jsonl").exists():
            raise OptbenchError(f"{run_dir}: no results.jsonl; is it a run directory?")
        rows = final_rows(run_dir)
        env = json.loads((run_dir / "env.json").read_text()) if (run_dir / "env.json").exists() else {}
        spec = yaml.safe_load((run_dir / "spec.yaml").read_text()) if (run_dir / "spec.yaml").exists() else {}
        uid = read_uid(run_dir) or hashlib.sha256(
            (str(run_dir.resolve()) + (run_dir / "results.jsonl").read_text()[:2000]).encode()).hexdigest()[:32]
        windows = [r["timing_window"][0] for r in rows.values() if isinstance(r.get("timing_window"), list)
                   and r["timing_window"]]
        started = min(windows) if windows else (run_dir / "results.jsonl").stat().st_mtime
        mode = "build" if rows and all(r.get("status") in ("built", "skipped") for r in rows.values()) else "run"
        run_id = self.record_run(uid, spec, env, run_dir.resolve(), mode, started_at=started)
        for row in rows.values():
            self.record_row(run_id, row)
        return run_id, len(rows)

    # ---------------------------------------------------------------- reading
    def spec_names(self) -> list[str]:
        import sqlalchemy as sa

        with self.engine.connect() as c:
            return sorted(r[0] for r in c.execute(sa.select(self.runs.c.spec_name).distinct()))

    def points(self, spec_name: str, variant: str = "*", before: str | None = None) -> dict[str, list[Point]]:
        """Per variant id (an fnmatch pattern), its rows over the spec's runs in start order; ``before``: only
        runs that started before the run with that uid."""
        import fnmatch

        import sqlalchemy as sa

        from optbench.store import restore_row

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

    def run_of(self, uid: str) -> dict | None:
        import sqlalchemy as sa

        with self.engine.connect() as c:
            got = c.execute(sa.select(self.runs).where(self.runs.c.uid == uid)).mappings().first()
        return dict(got) if got else None

    def counts(self) -> tuple[int, int]:
        import sqlalchemy as sa

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


def open_history(url: str | None = None, *, required: bool = False) -> History | None:
    """The history database at ``url`` (or where :func:`history_url` says); None when history is off or its
    library is missing, unless ``required`` (the ``history`` command): then one clear error."""
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
    return History(target)
