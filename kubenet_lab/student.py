"""Learner copies of the course notebooks: solutions out, checks kept.

The notebooks in ``notebooks/`` are the instructor's: every exercise is
answered between nbgrader's markers, and the check cell below it stores the
checker's PASS line (and carries ``# NBVAL_CHECK_OUTPUT``, so nbval compares
it in strict and lax mode alike)::

    ### BEGIN SOLUTION
    fourth_cidr = ipaddress.ip_network("10.244.3.0/24")
    ### END SOLUTION

A learner copy replaces each region. When the region assigns names, each
becomes ``name = None  # YOUR CODE HERE``, so the learner's cell still runs
and the check cell answers with a hint instead of a ``NameError``; otherwise
the region becomes nbgrader's own placeholder (``raise NotImplementedError()``).
Outputs and execution counts are cleared, as ``nbgrader generate_assignment``
does. Markdown cells may hold a region too; it becomes ``YOUR ANSWER HERE``.

>>> print(strip_solutions('x = 1\\n### BEGIN SOLUTION\\nanswer = 2 + 2\\n### END SOLUTION\\nprint(answer)'))
x = 1
answer = None  # YOUR CODE HERE
print(answer)
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from .errors import InvalidValue

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CODE_PLACEHOLDER = "# YOUR CODE HERE\nraise NotImplementedError()"
MARKDOWN_PLACEHOLDER = "YOUR ANSWER HERE"

__all__ = ["strip_solutions", "learner_copy", "write_learner_copies", "BEGIN", "END"]


def _assigned_names(code: str) -> list[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names: list[str] = []
    for statement in tree.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else (
            [statement.target] if isinstance(statement, (ast.AnnAssign, ast.AugAssign)) else [])
        for target in targets:
            for node in ast.walk(target):
                if isinstance(node, ast.Name) and node.id not in names:
                    names.append(node.id)
    return names


def strip_solutions(source: str, *, markdown: bool = False, where: str = "cell") -> str:
    """Replace every BEGIN/END SOLUTION region of one cell's source, keeping its indentation."""
    lines = source.split("\n")
    out: list[str] = []
    region: list[str] | None = None
    indent = ""
    for line in lines:
        if BEGIN in line:
            if region is not None:
                raise InvalidValue(where, "source", line.strip(), f"must not open a solution region inside another ({BEGIN})")
            region, indent = [], re.match(r"\s*", line).group(0)
        elif END in line:
            if region is None:
                raise InvalidValue(where, "source", line.strip(), f"must close only an open solution region ({END})")
            if markdown:
                out.append(indent + MARKDOWN_PLACEHOLDER)
            else:
                body = "\n".join(l[len(indent):] if l.startswith(indent) else l for l in region)
                names = _assigned_names(body)
                placeholder = "\n".join(f"{n} = None  # YOUR CODE HERE" for n in names) or CODE_PLACEHOLDER
                out.extend(indent + l for l in placeholder.split("\n"))
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    if region is not None:
        raise InvalidValue(where, "source", BEGIN, f"must be closed by {END}")
    return "\n".join(out)


def learner_copy(notebook: dict) -> tuple[dict, int]:
    """The learner's version of a notebook (nbformat JSON as a dict), and how many regions were replaced."""
    copy = json.loads(json.dumps(notebook))
    replaced = 0
    for index, cell in enumerate(copy["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        count = source.count(BEGIN)
        if count:
            source = strip_solutions(source, markdown=cell["cell_type"] == "markdown", where=f"cell {index}")
            replaced += count
        cell["source"] = source
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return copy, replaced


def write_learner_copies(source: Path, out: Path) -> list[tuple[Path, int]]:
    """Write a learner copy of every ``*.ipynb`` in ``source`` into ``out``."""
    if not source.is_dir():
        raise InvalidValue("kubenet-lab student", "SRC", str(source), "must be a folder of notebooks")
    notebooks = sorted(source.glob("*.ipynb"))
    if not notebooks:
        raise InvalidValue("kubenet-lab student", "SRC", str(source), "must contain at least one .ipynb file")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        copy, replaced = learner_copy(json.loads(path.read_text(encoding="utf-8")))
        target = out / path.name
        target.write_text(json.dumps(copy, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append((target, replaced))
    return written
