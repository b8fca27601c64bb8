"""A yes-token verifier served by an engine: any OpenAI-compatible chat-completions server that returns
``top_logprobs`` for the first answer token (vLLM, SGLang).

Each image is one request: the image as a PNG data URL and the criterion's question as text, one answer
token at temperature 0 with ``logprobs``; P(yes | {yes, no}) is read from the returned top log-probabilities
(the yes/no spellings are summed, as the local verifier sums its yes/no token variants). Requests for a
batch run concurrently; each has a timeout and is retried with backoff on connection errors and 5xx
answers. A server that answers without log-probabilities (``transformers serve`` in transformers 5.x
ignores the field) is refused with one line, since text alone cannot give a probability.

Named ``openai:URL#MODEL`` (e.g. ``openai:http://127.0.0.1:8000#Qwen/Qwen2.5-VL-7B-Instruct``).
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from ..checks import UserError
from ..criteria import aggregate, resolve_criteria
from ..images import ImageBatch, to_pil

# Answer spellings, compared after stripping the tokenizer's leading space.
YES, NO = ("yes", "Yes", "YES"), ("no", "No", "NO")


class ServerError(UserError):
    """The server answered, but not with what the verifier needs."""


class RemoteYesTokenVerifier:
    """``verifier(images, prompt) -> FloatTensor[B]``: the served VLM's P(yes | {yes, no}) per image."""

    def __init__(self, url: str, model: str, *, criteria: Any = None, aggregation: str = "mean",
                 concurrency: int = 8, timeout: float = 60.0, retries: int = 3, top_logprobs: int = 20,
                 api_key: str | None = None):
        if not url.startswith(("http://", "https://")):
            raise UserError(f"openai verifier URL {url!r} must start with http:// or https://")
        if not model:
            raise UserError("name the served model after '#': openai:URL#MODEL")
        self.url = url.rstrip("/").removesuffix("/v1") + "/v1/chat/completions"
        self.model, self.criteria, self.aggregation = model, resolve_criteria(criteria), aggregation
        self.concurrency, self.timeout, self.retries = int(concurrency), float(timeout), int(retries)
        self.top_logprobs, self.api_key = int(top_logprobs), api_key
        self.stats = {"requests": 0, "retries": 0, "no_answer": 0}

    # ---------------------------------------------------------------------------------------- scoring
    def __call__(self, images: ImageBatch, prompt: str) -> torch.Tensor:
        pil = to_pil(images)
        rows = [(im, c.render(prompt)) for im in pil for c in self.criteria]
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency), thread_name_prefix="rd-remote") as pool:
            probs = list(pool.map(lambda row: self.p_yes(*row), rows))
        table = torch.tensor(probs, dtype=torch.float32).reshape(len(pil), len(self.criteria))
        return aggregate(table, [c.weight for c in self.criteria], self.aggregation)

    def p_yes(self, image, question: str) -> float:
        """P(yes | {yes, no}) for one image and question, from the first answer token's top log-probs."""
        answer = self._post({
            "model": self.model, "max_tokens": 1, "temperature": 0, "logprobs": True,
            "top_logprobs": self.top_logprobs,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": _data_url(image)}},
                {"type": "text", "text": question}]}],
        })
        try:
            top = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        except (KeyError, IndexError, TypeError):
            raise ServerError(f"the server at {self.url} returned no log-probabilities for model {self.model!r}: "
                              "the yes-token score needs them (vLLM and SGLang return them with logprobs=true; "
                              "transformers serve ignores the field)") from None
        yes = sum(math.exp(t["logprob"]) for t in top if t["token"].strip() in YES)
        no = sum(math.exp(t["logprob"]) for t in top if t["token"].strip() in NO)
        if yes + no == 0.0:  # neither answer among the top tokens: no evidence either way
            self.stats["no_answer"] += 1
            return 0.5
        return yes / (yes + no)

    def _post(self, body: dict) -> dict:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            self.stats["requests"] += 1
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt == self.retries:
                    detail = exc.read().decode(errors="replace")[:200]
                    raise ServerError(f"the server at {self.url} answered {exc.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self.retries:
                    raise ServerError(f"no answer from {self.url} after {self.retries + 1} tries: "
                                      f"{getattr(exc, 'reason', exc)}") from None
            self.stats["retries"] += 1
            time.sleep(min(0.2 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------------------- spec
    def spec(self) -> dict[str, Any]:
        return {"name": "openai", "url": self.url.removesuffix("/v1/chat/completions"), "model": self.model,
                "criteria": [c.to_dict() for c in self.criteria], "aggregation": self.aggregation}

    def __repr__(self) -> str:
        return f"RemoteYesTokenVerifier({self.url!r}, {self.model!r})"


def from_name(target: str, **kwargs: Any) -> RemoteYesTokenVerifier:
    """``URL#MODEL`` (what follows ``openai:``) -> the verifier."""
    url, _, model = target.partition("#")
    return RemoteYesTokenVerifier(url, model, **kwargs)


def _data_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
