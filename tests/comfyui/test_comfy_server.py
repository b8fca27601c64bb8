"""ComfyUI's own server on the loopback interface: main.py loads this repository from a custom_nodes
folder, serves its example workflows, and runs a posted graph (POST /prompt, poll /history)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from conftest import HERE, REPO, TINY_NODES, comfyui_dir
from graphs import ksampler_graph

from rd_inference.verifier_loading import default_verifier_path

LAUNCHER = HERE / "run_comfyui.py"
START_TIMEOUT = 120  # seconds: importing ComfyUI and its built-in nodes on a busy 2-core machine
RUN_TIMEOUT = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _post(url: str, payload: dict):
    req = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def server(tmp_path):
    base = tmp_path / "base"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "rd-inference").symlink_to(REPO, target_is_directory=True)
    (base / "custom_nodes" / TINY_NODES.name).symlink_to(TINY_NODES)
    frontend = tmp_path / "frontend"  # an empty frontend: the test talks to the API only
    frontend.mkdir()
    (frontend / "index.html").write_text("<html></html>")
    port = _free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115  (the server process writes it until teardown)
    cmd = [sys.executable, str(LAUNCHER), str(comfyui_dir()), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--front-end-root", str(frontend),
           "--database-url", f"sqlite:///{tmp_path / 'comfyui.db'}", "--disable-auto-launch"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI exited with {proc.returncode}:\n{(tmp_path / 'server.log').read_text()[-4000:]}")
            try:
                _get(f"{url}/system_stats")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(f"ComfyUI did not start in {START_TIMEOUT}s:\n{(tmp_path / 'server.log').read_text()[-4000:]}")
                time.sleep(0.5)
        yield url, tmp_path / "server.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_server_loads_the_nodes_and_runs_a_posted_workflow(server):
    url, log = server
    info = _get(f"{url}/object_info/RDSearchKSampler")["RDSearchKSampler"]
    assert info["display_name"] == "Search KSampler"
    templates = _get(f"{url}/workflow_templates")
    assert sorted(templates["rd-inference"]) == sorted(p.stem for p in (REPO / "workflows").glob("*.json"))
    entry = _run(url, log, ksampler_graph())
    assert entry["outputs"]["6"]["images"][0]["type"] == "temp"
    # The embedded toy VLM as the verifier, inside the real server (transformers must not see the test's
    # torchvision stub), with the prompt typed once in the encode node.
    graph = ksampler_graph(verifier_path=str(default_verifier_path()), budget="2x", steps=4)
    entry = _run(url, log, graph)
    assert entry["outputs"]["6"]["images"][0]["type"] == "temp"


def _run(url, log, graph) -> dict:
    prompt_id = _post(f"{url}/prompt", {"prompt": graph, "client_id": "test"})["prompt_id"]
    deadline = time.monotonic() + RUN_TIMEOUT
    while not (history := _get(f"{url}/history/{prompt_id}")):
        assert time.monotonic() < deadline, f"the prompt did not finish in {RUN_TIMEOUT}s:\n{log.read_text()[-4000:]}"
        time.sleep(0.5)
    entry = history[prompt_id]
    assert entry["status"]["status_str"] == "success", (entry["status"], log.read_text()[-4000:])
    return entry
