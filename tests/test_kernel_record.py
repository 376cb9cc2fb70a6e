"""Chapter 10's recording of the kernel lab: it round-trips, it replays without root, a live run
prints the same text as the replay, and the notebook passes nbval both ways."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubenet_lab import Cluster
from kubenet_lab.kernel.lab import missing_requirements
from kubenet_lab.kernel.record import (LIVE_ENV, Recording, RecordingMismatch, lab_report, replay, select_probes,
                                       should_run_live)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "10-real-kernel-lab.ipynb"
RECORDING = ROOT / "notebooks" / "data" / "kernel-lab-three-node-vxlan.json"
SCENARIO = ROOT / "scenarios" / "three-node-vxlan.yaml"
needs_root = pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements()))


@pytest.fixture(scope="module")
def cluster():
    return Cluster.load(SCENARIO)


def test_the_default_recording_is_the_chapters(cluster):
    assert lab_report(cluster, live=False).text() == lab_report(cluster, RECORDING, live=False).text()


def test_recording_round_trip(tmp_path):
    recording = Recording.load(RECORDING)
    copy = Recording.load(recording.save(tmp_path / "copy.json"))
    assert copy == recording
    assert copy.to_json() == RECORDING.read_text()  # the file is stored in its canonical form


def test_recording_of_another_format_is_refused(tmp_path):
    data = json.loads(RECORDING.read_text())
    data["format"] = 99
    with pytest.raises(RecordingMismatch, match="format"):
        Recording.from_json(json.dumps(data))


def test_recorded_report_agrees_on_every_probe(cluster):
    report = lab_report(cluster, RECORDING, live=False)
    assert len(report.probes) == 10 and report.agree == 10
    assert report.summary().endswith("10 probes, 10 agree")
    assert "knl" not in report.text()  # the lab's random prefix never shows
    assert [row[-1] for row in report.capture.rows] == ["yes", "no"]  # the request is the walk's frame, the reply is not


def test_replay_judges_the_recording_against_the_current_simulator(cluster):
    """A recording the kernel could not have made (a walk said delivered, the kernel not) shows as DISAGREE."""
    recording = Recording.load(RECORDING)
    probes = dict(recording.probes)
    key = "walk default/web-1 10.244.0.3"
    probes[key] = {**probes[key], "delivered": False}
    chosen = select_probes(cluster, include=(("web-1", "web-3"),))
    report = replay(cluster, Recording(recording.scenario, recording.kernel, probes, recording.tables), chosen,
                    capture=("web-1", "web-3"))
    assert report.agree == 9
    assert "default/web-1 -> default/client (10.244.0.3): DISAGREE (walk delivered, kernel dropped)" in report.summary()


def test_a_service_answer_outside_the_endpoints_disagrees(cluster):
    recording = Recording.load(RECORDING)
    probes = dict(recording.probes)
    key = next(k for k in probes if k.startswith("service default/web-1"))
    probes[key] = {"answer": "db-1"}
    chosen = select_probes(cluster, include=(("web-1", "web-3"),))
    report = replay(cluster, Recording(recording.scenario, recording.kernel, probes, recording.tables), chosen,
                    capture=("web-1", "web-3"))
    assert report.agree == 9 and "kernel db-1)" in report.summary()


def test_a_missing_probe_asks_for_a_new_recording(cluster):
    recording = Recording.load(RECORDING)
    probes = {k: v for k, v in recording.probes.items() if not k.startswith("service")}
    chosen = select_probes(cluster, include=(("web-1", "web-3"),))
    with pytest.raises(RecordingMismatch, match="record_kernel_lab"):
        replay(cluster, Recording(recording.scenario, recording.kernel, probes, recording.tables), chosen,
               capture=("web-1", "web-3"))


def test_the_environment_variable_forces_the_recording(monkeypatch):
    monkeypatch.setenv(LIVE_ENV, "0")
    assert not should_run_live()


@needs_root
def test_live_report_prints_what_the_recording_prints(cluster):
    live = lab_report(cluster, RECORDING, live=True)
    recorded = lab_report(cluster, RECORDING, live=False)
    assert live.text() == recorded.text()
    assert live.agree == len(live.probes)


@needs_root
def test_live_run_raises_when_the_kernel_contradicts_the_recording(cluster, tmp_path):
    recording = Recording.load(RECORDING)
    tables = json.loads(json.dumps(recording.tables))
    tables["node-1"]["ip route"].append("10.99.0.0/16 dev eth0")  # a route the kernel does not have
    forged = Recording(recording.scenario, recording.kernel, recording.probes, tables).save(tmp_path / "forged.json")
    with pytest.raises(RecordingMismatch, match=r"\+|-10.99.0.0/16"):
        lab_report(cluster, forged, live=True)


def _nbval(env_live: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(LIVE_ENV, None)
    if env_live is not None:
        env[LIVE_ENV] = env_live
    env.setdefault("SOURCE_DATE_EPOCH", "0")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "--nbval",
                           "--nbval-current-env", "-q", str(NOTEBOOK)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_notebook_passes_nbval_from_the_recording():
    """The Binder path: KUBENET_LAB_LIVE=0 forces the recording, even as root."""
    result = _nbval("0")
    assert result.returncode == 0, result.stdout[-3000:]


@needs_root
def test_notebook_passes_nbval_live():
    result = _nbval(None)
    assert result.returncode == 0, result.stdout[-3000:]
