"""The README's quickstart and the first example of every docs page run as written: the first ```bash block of
each page, its `optbench` commands in order (a `pip install` in front is the environment this suite runs in), paths
under `runs/` in a folder of the test's own, with the page's settings for a short run (judge mode, tiny serving
runs) added where the page's run would time or serve for minutes. Pages that build on the quickstart's run read
the one the README test made."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JUDGE = ["--set", "measure.mode=judge"]
# per page: settings added to its `optbench run` commands (nothing timed that the test does not need)
SHORT = {
    "README.md": JUDGE,
    "docs/scaling.md": JUDGE,
    "docs/serving.md": ["--set", "model.kwargs={epochs: 1, width: 8}", "--set", "data.calibration=32",
                        "--set", "data.eval=64", "--set", "measure.min_duration_s=0.05", "--set", "measure.rounds=1",
                        "--set", "serving.scenario=[offline]", "--set", "serving.qps=[]", "--set", "serving.peak=false",
                        "--set", "serving.concurrency=[]", "--set", "serving.energy=false",
                        "--set", "serving.min_duration_ms=200", "--set", "serving.min_query_count=16"],
}
# pages whose first example is not a command a test can run
NO_EXAMPLE = {
    "docs/columns.md": "the generated column reference: no command",
    "docs/results.md": "measured figures: no command",
    "docs/contributing.md": "its example is this test suite itself",
}
PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))


def first_example(page: str) -> list[list[str]]:
    """The `optbench` commands of the page's first bash block, each as argv (comments and pip installs dropped)."""
    text = (ROOT / page).read_text()
    found = re.search(r"```bash\n(.*?)```", text, re.S)
    assert found, f"{page} has no ```bash example"
    block = found.group(1).replace("\\\n", " ")
    commands = []
    for line in block.splitlines():
        for part in line.split("&&"):
            argv = shlex.split(part, comments=True)
            if argv and argv[0] == "optbench":
                commands.append(argv[1:])
            elif argv:
                assert argv[:2] == ["pip", "install"], f"{page}: an example step the test cannot run: {part!r}"
    assert commands, f"{page}'s first example runs no optbench command"
    return commands


def run_example(page: str, runs: Path, env: dict[str, str]) -> None:
    for argv in first_example(page):
        argv = [str(runs / a[len("runs/"):]) if a.startswith("runs/") else a for a in argv]
        if argv[0] == "run":
            argv += SHORT.get(page, [])
        proc = subprocess.run([sys.executable, "-m", "optbench", *argv], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, f"{page}: optbench {shlex.join(argv)} exited {proc.returncode}\n" \
                                     f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The README's quickstart, run as written (judged, not timed), into a runs/ folder the other pages read."""
    runs = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "OPTBENCH_HISTORY": f"sqlite:///{runs / 'history.sqlite'}"}
    run_example("README.md", runs, env)
    return runs, env


@pytest.mark.slow  # a run of the quickstart (~40 s on a shared 2-core machine), then each page's command
@pytest.mark.parametrize("page", [p for p in PAGES if p not in NO_EXAMPLE and p != "README.md"])
def test_the_first_example_of_each_page_runs(page, quickstart):
    runs, env = quickstart
    run_example(page, runs, env)


@pytest.mark.slow
def test_the_readme_quickstart_runs(quickstart):
    runs, _ = quickstart
    assert (runs / "digits" / "report.html").is_file() and (runs / "digits" / "results.jsonl").is_file()


def test_every_page_has_a_first_example_or_says_why_not():
    for page in PAGES:
        if page not in NO_EXAMPLE:
            assert first_example(page), page
    assert set(NO_EXAMPLE) <= set(PAGES), "a page named in NO_EXAMPLE is gone"


def test_contributing_shows_the_test_command_ci_runs():
    text = (ROOT / "docs" / "contributing.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert block and all(line in ci for line in block), (block, ci)
