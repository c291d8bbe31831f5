"""python -m compressor.report DIR [--out DIR]: rebuild summary.md, summary.csv and plots."""

import argparse
import sys

from compressor.report.build import build


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compressor.report", description=__doc__)
    parser.add_argument("dir", help="a sweep directory, or any folder holding run folders with results.json")
    parser.add_argument("--out", help="where to write (default: DIR)")
    args = parser.parse_args(argv)
    try:
        path = build(args.dir, args.out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
