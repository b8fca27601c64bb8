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


class Parser(argparse.ArgumentParser):
    """An option argparse refuses (a wrong type, a missing argument) gets one line, like every other bad
    input, instead of the whole usage text above it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rd-tts", description="Test-time scaling for diffusion image models.")
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


def out_of_memory(exc: BaseException) -> bool:
    """The device or the host ran out of memory: sizes, budgets or batches too large for this machine."""
    torch = sys.modules.get("torch")  # loaded by whatever ran out; the parser does not import it
    return (isinstance(exc, MemoryError) or (torch is not None and isinstance(exc, torch.OutOfMemoryError))
            or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        print(f"rd-tts {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug or not out_of_memory(exc):
            raise
        from .checks import first_line

        print(f"rd-tts {args.command}: error: out of memory ({first_line(exc)[:160]}): lower --max-batch, the "
              "image size or the budget, or use --offload or a quantized verifier", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
