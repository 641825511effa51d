#!/usr/bin/env python3
"""Writes a wall in the text form for the engine's benchmarks: PROFILES lines of
SECTIONS random heights in 0..=30, the same file for the same seed.

    bench/make-wall.py [--profiles 500] [--sections 2000] [--seed 1] > big.txt
"""

import argparse
import random
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=500)
    parser.add_argument("--sections", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out = sys.stdout
    for _ in range(args.profiles):
        out.write(" ".join(str(rng.randint(0, 30)) for _ in range(args.sections)))
        out.write("\n")


if __name__ == "__main__":
    main()
