"""The course notebooks: stored right, graded both ways.

nbval itself runs every notebook in notebooks/ (see pytest's addopts) and compares
the stored outputs. These tests check what nbval cannot: that the notebooks were
executed top to bottom, that every check cell is armed, and that the learner copies
fail nbval on every check cell until the exercises are answered.
"""

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kubenet_lab.cli import main as kubenet_lab
from kubenet_lab.student import BEGIN

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
CHECK = re.compile(r"kubenet_lab\.exercises|\bch\d\d\.check_")


def code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def check_cells(path: Path) -> list[int]:
    """Indexes (among code cells, as nbval numbers them) of the cells that call a checker."""
    return [i for i, c in enumerate(code_cells(path)) if CHECK.search("".join(c["source"])) and "check_" in "".join(c["source"])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_top_to_bottom_with_the_standard_kernel(path):
    notebook = json.loads(path.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    counts = [c["execution_count"] for c in code_cells(path)]
    assert counts == list(range(1, len(counts) + 1))


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if not p.name.startswith("00-")], ids=lambda p: p.name)
def test_chapter_has_three_armed_exercises(path):
    cells = code_cells(path)
    checks = check_cells(path)
    assert len(checks) >= 3
    for index in checks:
        source = "".join(cells[index]["source"])
        assert "# NBVAL_CHECK_OUTPUT" in source, f"check cell {index} is not compared under --nbval-lax"
        text = "".join("".join(o.get("text", "")) for o in cells[index]["outputs"])
        assert text.startswith("PASS: "), f"check cell {index} stored {text!r}"
        assert BEGIN in "".join(cells[index - 1]["source"]), f"the cell before check cell {index} holds no solution"


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if check_cells(p)], ids=lambda p: p.name)
def test_learner_copy_fails_nbval_on_every_check_cell(path, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / path.name).write_text(path.read_text())
    assert kubenet_lab(["student", str(source), str(tmp_path / "learner")]) == 0
    copy = tmp_path / "learner" / path.name
    assert BEGIN not in copy.read_text()
    report = tmp_path / "report.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "--nbval", "--nbval-current-env",
         f"--junitxml={report}", "-q", str(copy)],
        cwd=path.parent, capture_output=True, text=True, timeout=600,
    )
    failed = set()
    for case in ET.parse(report).iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add(int(case.get("name").split()[-1]))
    missing = set(check_cells(path)) - failed
    assert not missing, f"check cells {sorted(missing)} passed in the learner copy"
    # Only the check cells fail: the learner's placeholders keep every other cell running.
    assert failed == set(check_cells(path))
