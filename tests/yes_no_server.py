"""A real OpenAI-compatible chat-completions server (FastAPI + uvicorn, its own process, 127.0.0.1) over a
local VLM folder, answering one token with ``top_logprobs`` as vLLM and SGLang do: what the remote
yes-token verifier needs and no server installable here offers (``transformers serve`` ignores logprobs).

    python tests/yes_no_server.py --model FOLDER --port 8000 [--no-logprobs] [--fail-first N]
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

from rd_inference.yes_token import YesTokenVerifier


def build_app(model: str, *, logprobs: bool = True, fail_first: int = 0) -> FastAPI:
    verifier = YesTokenVerifier.from_pretrained(model, device="cpu")
    tokenizer = verifier.processor.tokenizer
    app = FastAPI()
    calls = itertools.count()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if next(calls) < fail_first:  # a server still warming up
            return JSONResponse({"error": "warming up"}, status_code=503)
        body = await request.json()
        parts = body["messages"][-1]["content"]
        url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
        text = next(p["text"] for p in parts if p["type"] == "text")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
        with torch.inference_mode():
            logits = verifier.model(**verifier._inputs([([image], text)]), logits_to_keep=1).logits[0, -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        k = min(int(body.get("top_logprobs") or 0), logp.shape[0])
        values, ids = logp.topk(max(k, 1))
        tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
        choice = {"index": 0, "message": {"role": "assistant", "content": tokens[0]}, "finish_reason": "length"}
        if logprobs and body.get("logprobs"):
            top = [{"token": t, "logprob": float(v)} for t, v in zip(tokens, values.tolist())]
            choice["logprobs"] = {"content": [{"token": tokens[0], "logprob": float(values[0]), "top_logprobs": top}]}
        return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice]}

    return app


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--no-logprobs", action="store_true")
    ap.add_argument("--fail-first", type=int, default=0)
    args = ap.parse_args()
    uvicorn.run(build_app(args.model, logprobs=not args.no_logprobs, fail_first=args.fail_first),
                host="127.0.0.1", port=args.port, log_level="warning")
