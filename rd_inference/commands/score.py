"""``rd-tts score``: score image files with a verifier (a yes-token VLM by default) and print the ranking."""

from __future__ import annotations

import argparse

HELP = "Score image files with a verifier (a yes-token VLM, CLIP score, PickScore or an ensemble); print the ranking."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to score")
    from ..verifier_loading import VERIFIER_HELP

    parser.add_argument("--verifier", required=True, metavar="KIND:PATH_OR_ID", help=VERIFIER_HELP)
    parser.add_argument("--ensemble", choices=["mean", "rank"], default="mean",
                        help="how an ensemble (verifiers joined by '+') combines its members' scores")
    parser.add_argument("--prompt", required=True, help="the prompt the images were generated for")
    parser.add_argument(
        "--criteria",
        default=None,
        help="comma-separated criteria, each a built-in name with optional :weight, or a .json/.toml file "
        "(default: alignment). Built-in: alignment, object_consistency, text_accuracy, style_consistency, "
        "environment_relevance, visual_quality, plausibility, aesthetics",
    )
    parser.add_argument("--probability", choices=["conditional", "full"], default="conditional")
    parser.add_argument("--aggregation", choices=["mean", "rank"], default="mean")
    parser.add_argument("--pairwise", action="store_true", help="also run a round-robin pairwise tournament")
    parser.add_argument(
        "--top-k", type=int, default=None, help="images that play the tournament (default all)"
    )
    parser.add_argument("--rationale", action="store_true", help="print the VLM's reason for the top image")
    parser.add_argument("--quantization", choices=["8bit", "4bit"], default=None)
    parser.add_argument(
        "--dtype", default=None, help="e.g. bfloat16, float32 (default: bf16 on CUDA, fp32 on CPU)"
    )
    parser.add_argument(
        "--device", default=None, help="e.g. cuda, cuda:1, cpu (default: CUDA when available)"
    )
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="run the model repository's own code"
    )


def run(args: argparse.Namespace) -> int:
    from ..checks import (
        UserError,
        check_count,
        check_criteria,
        check_device,
        check_image_file,
        check_prompt,
        first_line,
    )
    from ..pairwise import tournament
    from ..verifier_loading import check_criteria_use, parse_verifier
    from ..yes_token import YesTokenVerifier

    # Every input is checked (images opened completely) before the verifier loads.
    check_prompt(args.prompt)
    images = [check_image_file(p) for p in args.images]
    check_count("--max-batch", args.max_batch, "images per verifier call")
    check_count("--top-k", args.top_k, "images that play the tournament")
    parts = parse_verifier(args.verifier)
    check_criteria(args.criteria)
    check_criteria_use(args.verifier, args.criteria)
    check_device(args.device)
    if len(parts) > 1 or parts[0][0] != "vlm":
        return _score_other(args, images)
    try:
        verifier = YesTokenVerifier.from_pretrained(
            parts[0][1], quantization=args.quantization, dtype=args.dtype, device=args.device,
            trust_remote_code=args.trust_remote_code, criteria=args.criteria, probability=args.probability,
            aggregation=args.aggregation, max_batch=args.max_batch,
        )
    except OSError as exc:
        raise UserError(f"cannot load the verifier {args.verifier}: {first_line(exc)}") from exc
    scores = verifier.score(images, args.prompt)
    chosen = scores.conditional if args.probability == "conditional" else scores.full
    names = [c.name for c in scores.criteria]
    width = max(len("image"), *(len(p) for p in args.images))
    print(f"verifier: {args.verifier}   probability: {args.probability}   aggregation: {args.aggregation}")
    print(
        f"{'rank':<5} {'score':>7}  {'image':<{width}}  " + "  ".join(f"{n:>{max(len(n), 7)}}" for n in names)
    )
    order = sorted(range(len(images)), key=lambda i: -float(scores.reward[i]))
    for rank, i in enumerate(order, start=1):
        cells = "  ".join(f"{float(chosen[i, j]):>{max(len(n), 7)}.4f}" for j, n in enumerate(names))
        print(f"{rank:<5} {float(scores.reward[i]):>7.4f}  {args.images[i]:<{width}}  {cells}")
    best = order[0]
    if args.pairwise:
        result = tournament(verifier, images, args.prompt, top_k=args.top_k, scores=scores.reward)
        print("\npairwise tournament (P(row beats column), both orders averaged):")
        print(result.table())
        best = result.winner
        print(f"tournament winner: {args.images[best]}")
    if args.rationale:
        print(f"\nrationale for {args.images[best]}: {verifier.rationale(images[best], args.prompt)}")
    return 0


def _score_other(args: argparse.Namespace, images) -> int:
    """Any verifier other than one VLM (CLIP score, PickScore, an ensemble): one score per image."""
    from ..checks import UserError
    from ..verifier_loading import load_verifier

    if args.pairwise or args.rationale:
        raise UserError("--pairwise and --rationale need a single VLM verifier (vlm:PATH or a bare VLM folder)")
    verifier = load_verifier(args.verifier, device=args.device, quantization=args.quantization,
                             criteria=args.criteria, aggregation=args.ensemble)
    scores = verifier(images, args.prompt)
    width = max(len("image"), *(len(p) for p in args.images))
    print(f"verifier: {args.verifier}" + (f"   ensemble: {args.ensemble}" if "+" in args.verifier else ""))
    print(f"{'rank':<5} {'score':>7}  {'image':<{width}}")
    for rank, i in enumerate(sorted(range(len(images)), key=lambda i: -float(scores[i])), start=1):
        print(f"{rank:<5} {float(scores[i]):>7.4f}  {args.images[i]:<{width}}")
    return 0
