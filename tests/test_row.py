"""The typed result row: every column documented and generated from one place, older rows read under today's
names, and the committed reference runs judged exactly as before the row was typed."""

import json
from pathlib import Path

import pytest

from optbench.errors import RunDirError
from optbench.row import COLUMNS, RENAMED, SCHEMA_VERSION, Row, as_warning, json_schema, normalize, reference_doc
from optbench.store import COLUMNS as STORE_COLUMNS
from optbench.store import final_rows, load_results, schema_note

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference"


def test_every_column_has_a_type_and_a_meaning_and_the_docs_are_generated():
    assert STORE_COLUMNS == [c.name for c in COLUMNS]
    assert len(set(STORE_COLUMNS)) == len(STORE_COLUMNS)
    for c in COLUMNS:
        assert c.doc.strip() and c.type != "any" and c.since <= SCHEMA_VERSION, c
        assert c.unit != "ms" or "_ms" in c.name, f"{c.name}: a ms column says so in its name"
        assert "_ms_" not in c.name or c.unit == "ms", f"{c.name}: named in ms but is {c.unit}"
    assert (ROOT / "docs" / "columns.md").read_text() == reference_doc(), \
        "docs/columns.md is generated: python -c 'from optbench.row import reference_doc; print(reference_doc(), end=\"\")' > docs/columns.md"


def test_an_older_row_reads_under_todays_names_with_typed_warnings():
    old = {"schema_version": 2, "variant_id": "v", "status": "ok", "latency_ms_cv": 0.5, "latency_ms_outliers": 3.0,
           "latency_ms_round_spread": 0.01, "iterations": 10.0, "cached": True,
           "warnings": ["unstable: round medians spread 9% > 5%", "machine busy during timing: steal",
                        "calibrated on random inputs (data: synthetic)", "something else"]}
    row = Row.from_dict(old)
    flat = row.to_dict()
    assert flat["latency_cv"] == 0.5 and flat["latency_round_spread"] == 0.01
    assert flat["latency_outliers"] == 3 and isinstance(flat["latency_outliers"], int)
    assert isinstance(flat["iterations"], int)
    assert "latency_ms_cv" not in flat and "cached" not in flat
    assert [w["code"] for w in flat["warnings"]] == ["unstable", "busy", "calibration", "other"]
    assert set(flat) == set(STORE_COLUMNS)
    assert "backend_name" in row.lacks() and "latency_cv" not in row.lacks()
    assert normalize(flat) == flat  # idempotent


def test_a_custom_hook_metric_is_kept_as_written():
    row = Row.from_dict({"variant_id": "v", "x_my_metric": 0.25})
    assert row.to_dict()["x_my_metric"] == 0.25 and row.get("x_my_metric") == 0.25
    assert as_warning({"code": "busy", "message": "m"}) == {"code": "busy", "message": "m"}


def test_a_mistyped_column_or_a_wrong_type_fails_where_the_row_is_built():
    from pydantic import ValidationError

    from optbench.row import Accuracy, Timing

    with pytest.raises(ValidationError, match="latncy_ms_p50"):
        Timing(latncy_ms_p50=1.0)  # a typo is refused, not written as an extra column
    row = Row()
    with pytest.raises(ValidationError, match="peak_rss"):
        row.memory.peak_rss = 1
    with pytest.raises(ValidationError, match="iterations"):
        row.timing.iterations = "many"
    row.accuracy = Accuracy(drift_rel_l2=0.01, outputs={"y": {"drift_rel_l2": 0.01}})
    row.timing.build_s = 0.5
    row.memory.gpu_peak_bytes = None  # a None given on purpose is a column given
    assert row.given() == {"drift_rel_l2": 0.01, "outputs": {"y": {"drift_rel_l2": 0.01}}, "build_s": 0.5,
                           "gpu_peak_bytes": None}
    assert set(normalize(row.given())) == set(STORE_COLUMNS)


def test_constraints_accept_former_column_names():
    from optbench.report.decide import parse_constraint

    assert parse_constraint("latency_ms_cv <= 0.1").column == "latency_cv"
    assert parse_constraint("latency_ms_round_spread < 0.05").column == "latency_round_spread"
    assert RENAMED["latency_ms_cv_trimmed"] == "latency_cv_trimmed"


REFERENCE_RUNS = sorted(p.parent for p in REFERENCE.glob("*/*/results.jsonl"))


def test_every_reference_run_loads_with_integer_columns_and_says_what_it_lacks():
    assert len(REFERENCE_RUNS) >= 8
    for run in REFERENCE_RUNS:
        df = load_results(run)
        assert list(df.columns[: len(STORE_COLUMNS)]) == STORE_COLUMNS
        assert str(df["batch_size"].dtype) == "Int64", run
        note = schema_note(run)
        first = json.loads((run / "results.jsonl").read_text().splitlines()[0])
        if first.get("schema_version", 1) < SCHEMA_VERSION:  # an older run says what its rows lack
            assert note and "schema version" in note, run
        else:
            assert note is None
        for row in final_rows(run).values():
            assert set(STORE_COLUMNS) <= set(row)


def test_a_schema_1_run_directory_imports_into_the_history_and_reads_back_typed(tmp_path):
    pytest.importorskip("sqlalchemy")
    from optbench.history.store import History
    from optbench.history.trends import series

    old = REFERENCE / "h100-host-cpu-2cores" / "quickstart"  # written before the row was typed
    want = final_rows(old)
    h = History(f"sqlite:///{tmp_path / 'history.sqlite'}")
    got = h.import_run(old)
    assert got.rows == len(want) and not got.skipped
    points = h.points("quickstart")
    assert sorted(points) == sorted(want)
    for vid, ps in points.items():
        assert set(STORE_COLUMNS) <= set(ps[0].row)
        assert ps[0].row["latency_ms_p50"] == want[vid]["latency_ms_p50"]
    assert any(s.points and s.points[0]["value"] is not None for s in series(h, "quickstart", "*", "p50"))


@pytest.mark.slow  # 20-70 s on two cores
def test_rows_validate_against_the_row_json_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    for run in REFERENCE_RUNS[:4]:
        for row in final_rows(run).values():
            jsonschema.validate(json.loads(json.dumps(row, default=str)), schema)


def test_check_gives_the_reference_runs_the_verdicts_they_had():
    """tests/data/reference_verdicts.json: check (and check --baseline on three pairs) of every committed run,
    computed by the code before the row was typed."""
    from optbench.check import check_run

    before = json.loads((ROOT / "tests" / "data" / "reference_verdicts.json").read_text())
    pairs = [k.split(" vs ") for k in before if " vs " in k]
    for key, want in before.items():
        if " vs " in key:
            continue
        if isinstance(want, str):  # a build directory: nothing to check, then and now
            with pytest.raises(RunDirError):
                check_run(REFERENCE / key)
            continue
        got = sorted([r.variant, r.check, bool(r.passed), bool(r.warning)] for r in check_run(REFERENCE / key).results)
        assert got == want, key
    for a, b in pairs:
        got = sorted([r.variant, r.check, bool(r.passed), bool(r.warning)]
                     for r in check_run(REFERENCE / a, REFERENCE / b).results)
        assert got == before[f"{a} vs {b}"], (a, b)


@pytest.mark.slow
def test_every_reference_run_re_renders(tmp_path):
    from optbench.report.render import write_report

    for run in REFERENCE_RUNS:
        if not any(r.get("status") == "ok" for r in final_rows(run).values()):
            continue
        out = write_report(run, tmp_path / f"{run.name}.html")
        text = out.read_text()
        if schema_note(run):
            assert "schema version" in text, run  # the older rows are said to be older
        assert all(vid in text for vid, r in final_rows(run).items() if r.get("status") == "ok"), run


def test_a_fresh_run_writes_todays_typed_rows(small_run):
    raw = [json.loads(line) for line in (small_run / "results.jsonl").read_text().splitlines() if line.strip()]
    assert raw and all(r["schema_version"] == SCHEMA_VERSION for r in raw)
    for r in raw:
        extra = set(r) - set(STORE_COLUMNS) - {"nonfinite"}
        assert not extra, f"{r['variant_id']}: columns no part of the row declares: {sorted(extra)}"
        assert all(isinstance(w, dict) and w["code"] and w["message"] for w in r["warnings"]), r["warnings"]
        assert r["backend_name"] in ("torch", "onnxruntime")
        assert r["reference_backend"] == "torch"  # skipped rows too: the spec implies it
        if r["status"] == "ok":
            assert isinstance(r["latency_outliers"], int) and isinstance(r["latency_cv"], float)
            assert r["topk_k"] == 5 and r["outputs"]
    assert schema_note(small_run) is None
