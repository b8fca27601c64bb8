"""The remote yes-token verifier against a real server process on 127.0.0.1 serving the embedded toy VLM
(tests/yes_no_server.py: the OpenAI chat-completions schema with top_logprobs, as vLLM answers)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rd_inference.checks import UserError
from rd_inference.toyworld.v2.world import render, sample_scene
from rd_inference.verifier_loading import default_verifier_path, load_verifier
from rd_inference.verifiers import verifier_from_spec, verifier_spec
from rd_inference.verifiers.remote import RemoteYesTokenVerifier, ServerError

HERE = Path(__file__).parent
PROMPTS = ["two red circles", "a blue square"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*extra: str):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    proc = subprocess.Popen([sys.executable, str(HERE / "yes_no_server.py"), "--model", str(default_verifier_path()),
                             "--port", str(port), *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode())
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the test server did not start in 90 s")


@pytest.fixture(scope="module")
def server():
    proc, url = start()
    yield url
    proc.kill()


def scenes(prompt: str, n: int = 3):
    rng = np.random.default_rng(0)
    return [render(sample_scene(prompt, rng)) for _ in range(n)]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_remote_scores_equal_the_local_verifier(server, prompt):
    local = load_verifier(None, device="cpu")
    remote = load_verifier(f"openai:{server}#toy-vlm")
    images = scenes(prompt)
    expected = local.score(images, prompt).conditional[:, 0]
    got = remote(images, prompt)
    assert got.shape == (3,) and torch.allclose(got, expected, atol=1e-4), (got, expected)
    assert remote.stats["no_answer"] == 0 and remote.stats["requests"] == 3


def test_spec_rebuilds_the_remote_verifier(server):
    remote = load_verifier(f"openai:{server}#toy-vlm")
    copy = verifier_from_spec(verifier_spec(remote))
    images = scenes(PROMPTS[0], 2)
    assert isinstance(copy, RemoteYesTokenVerifier) and torch.equal(copy(images, PROMPTS[0]), remote(images, PROMPTS[0]))


def test_retries_a_server_that_is_warming_up():
    proc, url = start("--fail-first", "2")
    try:
        remote = RemoteYesTokenVerifier(url, "toy-vlm", concurrency=1, retries=3)
        assert remote(scenes(PROMPTS[1], 1), PROMPTS[1]).shape == (1,)
        assert remote.stats["retries"] == 2
    finally:
        proc.kill()


def test_a_server_without_logprobs_is_refused_in_one_line():
    proc, url = start("--no-logprobs")
    try:
        with pytest.raises(ServerError, match="returned no log-probabilities for model 'toy-vlm'"):
            RemoteYesTokenVerifier(url, "toy-vlm")(scenes(PROMPTS[0], 1), PROMPTS[0])
    finally:
        proc.kill()


def test_unreachable_server_and_bad_names():
    port = free_port()  # nothing listens there
    with pytest.raises(ServerError, match="no answer from"):
        RemoteYesTokenVerifier(f"http://127.0.0.1:{port}", "m", retries=1, timeout=2)(scenes(PROMPTS[0], 1), PROMPTS[0])
    with pytest.raises(UserError, match="openai:URL#MODEL"):
        load_verifier("openai:http://127.0.0.1:8000")
    with pytest.raises(UserError, match="openai:URL#MODEL"):
        load_verifier("openai:localhost#m")
