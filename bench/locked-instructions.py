#!/usr/bin/env python3
"""Locked instructions per request, from callgrind files with per-instruction counts.

A locked instruction (an atomic read-modify-write: `lock add`, `lock cmpxchg`, `xchg`
with memory) is a full barrier that costs some 20 cycles or more where a plain store
costs one, and callgrind counts it as one instruction like any other: this finds them
in each object's disassembly (objdump) and adds up their counts, with `mfence` (a
sequentially consistent fence), the other full barrier.

Usage: bench/locked-instructions.py REQUESTS [--top N] CALLGRIND_FILE...
The files must come from `valgrind --tool=callgrind --dump-instr=yes --dump-line=no
--compress-pos=no --compress-strings=no` (as bench/instructions.sh runs it), whose
positions are the objects' own addresses. Prints the total per request, then the N
(default 0) instructions with the most, with the function objdump names (functions that
the compiler merged share one name: the name may be another's). Needs objdump; an
object it cannot read is named on stderr and counts none.
"""

import collections
import re
import subprocess
import sys


def locked_instructions(path):
    """{address: (function, instruction)} of the locked instructions in an object."""
    found = {}
    objdump = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", path],
        capture_output=True, text=True, check=False,
    )
    if objdump.returncode != 0:
        print(f"objdump cannot read {path}: its locked instructions are not counted",
              file=sys.stderr)
    disassembly = objdump.stdout
    function = "?"
    for line in disassembly.splitlines():
        start = re.match(r"^[0-9a-f]+ <(.*)>:", line)
        if start:
            function = start.group(1)
            continue
        instruction = re.match(r"^\s+([0-9a-f]+):\s+(.*)$", line)
        if not instruction:
            continue
        text = instruction.group(2)
        # `xchg` with a memory operand is locked without the prefix; the prefix may
        # follow another (`xacquire lock ...`).
        if (re.search(r"\block\b", text) or (text.startswith("xchg") and "(" in text)
                or text.startswith("mfence")):
            found[int(instruction.group(1), 16)] = (function, text)
    return found


def counts_at_locked(files):
    """Counts of each locked instruction executed, by (object, address)."""
    objects = {}
    counted = collections.Counter()
    for file in files:
        # Object names by id: an id is named where it first appears, in an `ob=` or a
        # `cob=` line, and stands alone after that.
        names = {}
        current = None
        after_call = False
        with open(file, errors="replace") as lines:
            for line in lines:
                object_line = re.match(r"(c?ob)=(\(\d+\))?\s*(.*)", line.strip())
                if object_line:
                    kind, number, name = object_line.groups()
                    if name:
                        names[number] = name
                    if kind == "ob":
                        current = name or names.get(number)
                elif line.startswith(("calls=", "jump=", "jcnd=")):
                    # The next position line is the call's or the jump's, not a cost of
                    # this function's own instructions.
                    after_call = True
                elif line.startswith("0x"):
                    if after_call:
                        after_call = False
                        continue
                    if current is None or len(line.split()) < 2:
                        continue
                    if current not in objects:
                        objects[current] = locked_instructions(current)
                    address, count = line.split()[:2]
                    if int(address, 16) in objects[current]:
                        counted[(current, int(address, 16))] += int(count)
    return counted, objects


def main():
    arguments = sys.argv[1:]
    requests = int(arguments.pop(0))
    top = 0
    if arguments and arguments[0] == "--top":
        top = int(arguments[1])
        arguments = arguments[2:]
    counted, objects = counts_at_locked(arguments)
    print(f"{sum(counted.values()) / requests:.2f}")
    for (path, address), count in counted.most_common(top):
        function, text = objects[path][address]
        print(f"  {count / requests:6.2f}  {text}  in {function[:100]} ({path.rsplit('/', 1)[-1]})")


if __name__ == "__main__":
    main()
