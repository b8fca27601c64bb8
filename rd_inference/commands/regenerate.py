"""rd-tts regenerate: rebuild one node's image from a run directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Rebuild any node of a run bit-exactly (on the same device) from its run directory."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by rd-tts generate")
    p.add_argument("node_id", type=int, help="node id from tree.jsonl")
    p.add_argument("--out", default=None, help="PNG to write (default: RUN_DIR/../<run>-node-<id>.png); for a video "
                   "run, an MP4 with its exact frames as PNGs in a folder of the same name")
    p.add_argument("--device", default=None)


def run(args: argparse.Namespace) -> int:
    from ..api import regenerate
    from ..checks import check_device

    run_dir = Path(args.run_dir)
    check_device(args.device)
    if args.out and not Path(args.out).parent.is_dir():
        raise FileNotFoundError(f"--out {args.out}: folder {Path(args.out).parent} does not exist")
    image = regenerate(run_dir, args.node_id, device=args.device)
    if isinstance(image, list):  # a video's frames
        from ..video import fps_of, write_video

        out = Path(args.out) if args.out else run_dir.parent / f"{run_dir.name}-node-{args.node_id:05d}.mp4"
        out = out.with_suffix(".mp4")
        config = json.loads((run_dir / "summary.json").read_text()).get("config", {})
        write_video(image, out.parent, out.stem, fps=fps_of(config))
        print(f"wrote {out} (frames in {out.with_suffix('')}/)")
        return 0
    out = Path(args.out) if args.out else run_dir.parent / f"{run_dir.name}-node-{args.node_id:05d}.png"
    image.save(out)
    print(f"wrote {out}")
    return 0
