#!/usr/bin/env python3
"""The library's shape, checked: no source file of Sources/GRPCPool over 300 lines, no function,
initializer or accessor over 80 (generated code aside).

Function extents come from the Swift compiler's own parser (`swiftc -dump-parse`), so comments,
strings and closures count as the compiler sees them. Prints each excess; exits 1 if any.
"""

import pathlib
import re
import subprocess
import sys

MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 80

root = pathlib.Path(__file__).resolve().parent.parent
files = sorted(p for p in (root / "Sources/GRPCPool").rglob("*.swift") if "Generated" not in p.parts)
excesses = []
for path in files:
    lines = path.read_text().count("\n")
    if lines > MAX_FILE_LINES:
        excesses.append(f"{path.relative_to(root)}: {lines} lines (at most {MAX_FILE_LINES})")

# One file's dump goes to standard output, several files' to standard error.
parsed = subprocess.run(["swiftc", "-dump-parse", *map(str, files)], capture_output=True, text=True, cwd=root)
if parsed.returncode != 0:
    sys.exit(f"shape: swiftc -dump-parse failed:\n{parsed.stderr[-2000:]}")
dump = parsed.stdout + parsed.stderr
decl = re.compile(
    r"\((func_decl|constructor_decl|destructor_decl|accessor_decl)\b(?!.* implicit ).*?"
    r"range=\[([^:\]]+):(\d+):\d+ - line:(\d+):\d+\]\s+\"([^\"]*)\""
)
seen = set()
for match in decl.finditer(dump):
    _, file, first, last, name = match.groups()
    length = int(last) - int(first) + 1
    key = (file, first)
    if length > MAX_FUNCTION_LINES and key not in seen:
        seen.add(key)
        excesses.append(f"{pathlib.Path(file).relative_to(root)}:{first}: {name} is {length} lines (at most {MAX_FUNCTION_LINES})")

for line in excesses:
    print(line)
print(f"shape: {len(files)} files, {len(excesses)} over the limits", file=sys.stderr)
sys.exit(1 if excesses else 0)
