"""Every chapter has the course's shape (RULES "Notebooks"; notebooks/04 and 07 are the models).

A chapter (notebooks 01-10) opens with ``# NN · Title`` and a short intro, then ``## Learning
goals``; it has a "> ### Try it on a real cluster" box and ends with ``## Key takeaways`` as its last
markdown section. Chapters 01-09 have at least three graded exercises, each written as three cells:
a markdown task with a hint, a solution cell whose ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
region assigns a variable, and a check cell whose source is exactly ``# NBVAL_CHECK_OUTPUT`` and
``chNN.check_name(variable)``. In every notebook, a ``# NBVAL_IGNORE_OUTPUT`` cell says why on the
next comment line.

Notebooks are found by glob, so a new chapter is checked the moment it lands.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]-*.ipynb"))
CHAPTERS = [p for p in NOTEBOOKS if 1 <= int(p.name[:2]) <= 10]
GRADED = [p for p in CHAPTERS if int(p.name[:2]) <= 9]
LEARNING_GOALS_WITHIN = 3  # cells: the title and intro, perhaps the imports, then the goals
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$", re.M)


def cells(path: Path) -> list[dict]:
    return [dict(c, text="".join(c["source"])) for c in json.loads(path.read_text())["cells"]]


def headings(path: Path) -> list[tuple[int, int, str]]:
    """(cell index, level, title) of every markdown heading, in order; box headings (``> ###``) excluded."""
    return [(i, len(m[1]), m[2]) for i, c in enumerate(cells(path)) if c["cell_type"] == "markdown"
            for m in HEADING.finditer(c["text"])]


def graded_exercises(path: Path) -> list[str]:
    """The variables of the well-formed exercises: task with hint, solution region, exact check cell."""
    number = path.name[:2]
    check = re.compile(rf"# NBVAL_CHECK_OUTPUT\nch{number}\.check_\w+\((\w+)\)")
    found, all_cells = [], cells(path)
    for i, cell in enumerate(all_cells):
        match = check.fullmatch(cell["text"].strip())
        if cell["cell_type"] != "code" or not match or i < 2:
            continue
        solution, task = all_cells[i - 1], all_cells[i - 2]
        region = re.search(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", solution["text"], re.S)
        assigns = region and re.search(rf"^{match[1]}\s*=", region[1], re.M)
        if solution["cell_type"] == "code" and assigns and task["cell_type"] == "markdown" and "Hint" in task["text"]:
            found.append(match[1])
    return found


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@pytest.mark.parametrize("path", CHAPTERS, ids=names(CHAPTERS))
def test_chapter_opens_with_title_then_learning_goals(path):
    found = headings(path)
    assert found and found[0][1] == 1 and re.fullmatch(rf"{path.name[:2]} · .+", found[0][2]), found[:1]
    sections = [(i, title) for i, level, title in found if level == 2]
    assert sections and sections[0][1] == "Learning goals", f"first section is {sections[:1]}"
    assert sections[0][0] < LEARNING_GOALS_WITHIN
    goals = cells(path)[sections[0][0]]["text"].split("## Learning goals", 1)[1]
    assert re.search(r"^[-*] ", goals, re.M), "Learning goals has no bullet list"


@pytest.mark.parametrize("path", CHAPTERS, ids=names(CHAPTERS))
def test_chapter_has_a_try_it_on_a_real_cluster_box(path):
    boxes = [c["text"] for c in cells(path) if c["cell_type"] == "markdown"
             and re.search(r"^> ### Try it on a real cluster", c["text"], re.M)]
    assert boxes, "no '> ### Try it on a real cluster' box"
    # A box shows commands to type: a fenced block inside the quote.
    assert any("> ```" in box for box in boxes)


@pytest.mark.parametrize("path", GRADED, ids=names(GRADED))
def test_chapter_has_three_graded_exercises(path):
    assert len(graded_exercises(path)) >= 3, graded_exercises(path)


@pytest.mark.parametrize("path", CHAPTERS, ids=names(CHAPTERS))
def test_key_takeaways_is_the_last_section(path):
    found = headings(path)
    assert found and found[-1][1:] == (2, "Key takeaways"), f"last heading is {found[-1:]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=names(NOTEBOOKS))
def test_every_ignored_output_says_why(path):
    unjustified = []
    for i, cell in enumerate(cells(path)):
        lines = cell["text"].splitlines()
        for n, line in enumerate(lines):
            if line.strip().lstrip("#").strip().startswith("NBVAL_IGNORE_OUTPUT"):
                # the reason: the rest of the marker line, or the comment line after it
                reason = line.split("NBVAL_IGNORE_OUTPUT", 1)[1].strip(" :-–")
                following = lines[n + 1].strip() if n + 1 < len(lines) else ""
                if len(reason.split()) < 3 and not (following.startswith("#") and len(following.split()) >= 4):
                    unjustified.append(i)
    assert not unjustified, f"cells {unjustified}: NBVAL_IGNORE_OUTPUT without a comment saying why"


def test_all_chapters_00_to_10_exist():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{n:02d}" for n in range(11)]
