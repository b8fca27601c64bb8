"""``rd-tts``: one console script, one module per sub-command under :mod:`rd_inference.commands`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module; a new command is one line here and one module.
COMMANDS = {
    "generate": "rd_inference.commands.generate",
    "regenerate": "rd_inference.commands.regenerate",
    "score": "rd_inference.commands.score",
    "bench": "rd_inference.commands.bench",
    "demo": "rd_inference.commands.demo",
    "batch": "rd_inference.commands.batch",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rd-tts", description="Test-time scaling for diffusion image models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
        p.set_defaults(_run=module.run)
    return parser


# What a user can fix from the message alone; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"rd-tts {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
