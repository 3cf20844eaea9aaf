"""A check's report as JUnit XML (as pytest's ``--junitxml`` writes it), for CI systems that show test results."""

from __future__ import annotations

from pathlib import Path

import optbench.clock as clock
from optbench.check.results import Report


def write_junit(report: Report, path: Path, name: str, rows: dict[str, dict] | None = None) -> None:
    """A JUnit suite named after the spec, a testcase per variant and check (budget, status, latency), the
    variant's wall time on its status case."""
    import socket
    import xml.etree.ElementTree as ET

    rows = rows or {}
    wall = {vid: float(r.get("wall_s") or 0.0) for vid, r in rows.items() if isinstance(r.get("wall_s"), (int, float))}
    suite = ET.Element("testsuite", name=f"optbench.{name}", tests=str(len(report.results)),
                       failures=str(len(report.violations)), errors="0", skipped=str(len(report.warnings)),
                       time=f"{sum(wall.values()):.3f}", timestamp=clock.iso_local(),
                       hostname=socket.gethostname())
    for r in report.results:
        t = wall.get(r.variant, 0.0) if r.check == "status" else 0.0
        case = ET.SubElement(suite, "testcase", classname=f"optbench.{name}.{r.variant}", name=r.check, time=f"{t:.3f}")
        if not r.passed and r.warning:
            ET.SubElement(case, "skipped", message=r.message)
        elif not r.passed:
            ET.SubElement(case, "failure", message=r.message, type="BudgetViolation").text = r.message
    root = ET.Element("testsuites", name=f"optbench.{name}", tests=suite.get("tests"), failures=suite.get("failures"),
                      time=suite.get("time"))
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
