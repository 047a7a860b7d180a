"""Operations per second from files of kvbench output lines ('put: N ops in S s = ...'), for bench.sh."""
import re


def rate(work, name):
    """Total operations and seconds over every kvbench run in the file work/name."""
    ops = secs = 0.0
    for line in open(f"{work}/{name}"):
        m = re.search(r"(\d+) ops in ([\d.]+) s", line)
        if m:
            ops += int(m.group(1))
            secs += float(m.group(2))
    return ops, secs
