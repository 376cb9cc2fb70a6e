"""Every notebook, run in a real JupyterLab in a real browser: figures render, widgets load, no errors.

nbval has no frontend: it cannot see a figure that fails to display or a widget whose JavaScript
never loaded ("Error displaying widget", ipywidgets #3968). This test does what a learner does.
One JupyterLab is started on loopback (tests/loopback_lab.py), rooted at a temporary copy of the
course, so nothing is written into the repository; one headless Chromium (Debian's ``chromium``,
driven by Playwright with ``executable_path``: no browser download) opens each notebook in turn,
clears its stored outputs and runs all cells through JupyterLab's command registry, as Galata's
``page.notebook.run()`` does (``window.jupyterapp`` is exposed with
``LabApp.expose_app_in_browser``). Once the kernel is idle and every code cell has an execution
count, it checks, from the cell models JupyterLab holds and from the DOM:

* no cell produced an error output;
* as many ``image/png`` figures as the stored notebook has, each an ``<img>`` with a nonzero
  natural size (so the browser decoded it);
* where the stored notebook has a widget view, ipywidgets' frontend rendered it (``.jupyter-widgets``
  elements with a slider or dropdown), and never printed "Error displaying widget".

A screenshot of each notebook is saved in test-artifacts/browser/ (gitignored).

Chapter 10's kernel lab runs from its recording here (``KUBENET_LAB_LIVE=0``): the live lab is
nbval's and the kernel-lab tests' business; this test is about what the browser shows, which is the
same text either way.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from loopback_lab import running_lab, scratch_environment

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
RUN_TIMEOUT_MS = 120_000
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# Settings a learner never needs in a test: full DOM rendering of every cell (JupyterLab 4 only
# lays out visible cells by default, and an off-screen <img> would not be decoded), and no news
# fetched from the internet.
USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}

# Open a notebook, wait for its kernel, clear the stored outputs, then start "Run All Cells".
OPEN_AND_RUN = """async (path) => {
  const app = window.jupyterapp;
  const panel = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  window.kubenetPanel = panel;
  await app.commands.execute('notebook:clear-all-cell-outputs');
  app.commands.execute('notebook:run-all-cells');
}"""

# Done when the kernel is idle and every code cell has run, or an error stopped the run.
RUN_FINISHED = """() => {
  const panel = window.kubenetPanel;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  const cells = panel.content.widgets.map(c => c.model.toJSON()).filter(c => c.cell_type === 'code');
  const failed = cells.some(c => c.outputs.some(o => o.output_type === 'error'));
  return failed || cells.every(c => c.execution_count !== null);
}"""

# What the learner sees: the cells' models, the figures' <img> elements, the widget views.
OBSERVE = """async () => {
  const node = window.kubenetPanel.node;
  const images = [...node.querySelectorAll('.jp-OutputArea-output.jp-RenderedImage img')]
    .filter(img => !img.closest('.jupyter-widgets'));
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  return {
    cells: window.kubenetPanel.content.widgets.map(c => c.model.toJSON()),
    images: images.map(img => [img.naturalWidth, img.naturalHeight]),
    widgets: node.querySelectorAll('.jupyter-widgets').length,
    controls: node.querySelectorAll('.widget-slider, .widget-dropdown').length,
    widgetErrors: [...node.querySelectorAll('.jp-OutputArea-output')]
      .filter(o => o.textContent.includes('Error displaying widget')).length,
  };
}"""

# Scroll the screenshot to the first widget view, else the first figure.
SHOW_FIRST_OUTPUT = """() => {
  const node = window.kubenetPanel.node;
  const first = node.querySelector('.jupyter-widgets') || node.querySelector('.jp-RenderedImage');
  if (first) first.scrollIntoView({block: 'center'});
}"""

# Leave the notebook without saving and stop its kernel, so the next one starts alone.
CLOSE = """async () => {
  const panel = window.kubenetPanel;
  await panel.sessionContext.shutdown();
  panel.context.model.dirty = false;
  panel.dispose();
}"""


def stored_outputs(path: Path) -> list[dict]:
    cells = json.loads(path.read_text())["cells"]
    return [o for c in cells if c["cell_type"] == "code" for o in c["outputs"]]


def count_mime(outputs: list[dict], mime: str) -> int:
    return sum(1 for o in outputs if mime in o.get("data", {}))


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a temporary copy of notebooks/ (and scenarios/), with its own Jupyter dirs."""
    scratch = tmp_path_factory.mktemp("browser")
    course = scratch / "course"
    shutil.copytree(ROOT / "notebooks", course / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "scenarios", course / "scenarios")
    env = scratch_environment(scratch, KUBENET_LAB_LIVE="0")
    for name, settings in USER_SETTINGS.items():
        path = Path(env["JUPYTER_CONFIG_DIR"]) / "lab" / "user-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    command = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={course}", "--allow-root",
               "--LabApp.expose_app_in_browser=True", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with running_lab(command, scratch, cwd=course, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def page(browser, lab):
    """One tab with JupyterLab loaded, reused for every notebook."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = context.new_page()
    tab.goto(lab.link("lab"))
    tab.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined", timeout=60_000)
    tab.evaluate("() => window.jupyterapp.started")
    tab.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    yield tab
    context.close()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_renders_in_jupyterlab(page, path):
    page.evaluate(OPEN_AND_RUN, f"notebooks/{path.name}")
    try:
        page.wait_for_function(RUN_FINISHED, timeout=RUN_TIMEOUT_MS, polling=500)
        seen = page.evaluate(OBSERVE)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.evaluate(SHOW_FIRST_OUTPUT)
        page.screenshot(path=str(ARTIFACTS / f"{path.stem}.png"))
    finally:
        page.evaluate(CLOSE)

    code = [c for c in seen["cells"] if c["cell_type"] == "code"]
    errors = [f"cell {i}: {o['ename']}: {o['evalue']}" for i, c in enumerate(code) for o in c["outputs"]
              if o["output_type"] == "error"]
    assert not errors, errors
    assert all(c["execution_count"] is not None for c in code)

    stored = stored_outputs(path)
    produced = [o for c in code for o in c["outputs"]]
    figures = count_mime(stored, "image/png")
    assert count_mime(produced, "image/png") == figures
    assert len(seen["images"]) == figures, f"{len(seen['images'])} <img> figures shown, {figures} stored"
    assert all(w > 0 and h > 0 for w, h in seen["images"]), seen["images"]

    assert seen["widgetErrors"] == 0
    if count_mime(stored, WIDGET_VIEW):
        assert count_mime(produced, WIDGET_VIEW) == count_mime(stored, WIDGET_VIEW)
        assert seen["widgets"] > 0 and seen["controls"] > 0, "ipywidgets' frontend did not render the widget views"
