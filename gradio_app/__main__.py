"""``python -m gradio_app``: the same options as ``rd-tts demo``."""

import argparse
import sys

from rd_inference.commands import demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradio_app", description=demo.HELP)
    demo.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return demo.run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gradio_app: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
