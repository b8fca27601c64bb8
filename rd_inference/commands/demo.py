"""rd-tts demo: the Gradio page (gradio_app), served on this machine only unless --host says otherwise."""

from __future__ import annotations

import argparse
import importlib.util
import os

HELP = "Open the Gradio demo (generate with search, compare strategies, score images) on 127.0.0.1."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 exposes the demo to your network (deliberately)")
    p.add_argument("--port", type=int, default=None, help="port (default: Gradio's, 7860 or the next free one)")
    p.add_argument("--model", default="", help="pre-filled model field: diffusers folder or hub id")
    p.add_argument("--verifier", default="", help="pre-filled verifier field: VLM folder or hub id, brightness, "
                   "color:R,G,B")
    p.add_argument("--quantization", choices=["none", "8bit", "4bit"], default="none")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--max-queue", type=int, default=8, help="requests that may wait for the device")


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("gradio") is None:
        raise ValueError("the demo needs Gradio: pip install 'rd-inference[gradio]' (or -e '.[gradio]')")
    if args.max_queue < 1:
        raise ValueError(f"--max-queue must be >= 1, got {args.max_queue}")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from gradio_app import Backend, build_demo, launch

    defaults = {"model": args.model, "verifier": args.verifier, "quantization": args.quantization}
    demo = build_demo(Backend(device=args.device), defaults=defaults, max_queue=args.max_queue)
    launch(demo, host=args.host, port=args.port)
    return 0
