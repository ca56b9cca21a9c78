"""Heap per connection at a massif dump's peak, by allocation site: python3 massif.py FILE CLIENTS

A site is the first frame, walking up from the allocator, that names a function of the stack
(not alloc/core/std/bytes/hashbrown internals, nor inlined-code placeholders)."""
import collections
import re
import sys

GENERIC = re.compile(
    r"^(0x[0-9A-F]+: )?(alloc|core|std|hashbrown|bytes|__rust|<alloc|<core|<std|<bytes|<hashbrown|"
    r"malloc|realloc|calloc|aligned_malloc|UnknownInlinedFun|with_capacity|new<|box_new|allocate|"
    r"alloc_impl|do_alloc|new_uninitialized|fallible_with_capacity|reserve|grow|finish_grow)"
)
ENTRY = re.compile(r"^( *)n(\d+): (\d+) (.*)$")


def main():
    path, clients = sys.argv[1], int(sys.argv[2])
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    peak, peak_heap = None, -1
    for i, line in enumerate(lines):
        if line.startswith("mem_heap_B="):
            heap = int(line.split("=")[1])
            if heap > peak_heap and lines[i + 3].startswith("heap_tree=") and "empty" not in lines[i + 3]:
                peak, peak_heap = i + 4, heap
    if peak is None:
        sys.exit("no detailed snapshot in the dump")
    sites = collections.Counter()
    stack = []
    for line in lines[peak:]:
        m = ENTRY.match(line)
        if not m:
            break
        depth, children, size, desc = len(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        stack.append((depth, desc))
        if children == 0 and len(stack) > 1:
            frames = [re.sub(r"^0x[0-9A-F]+: ", "", d) for _, d in stack[1:]]
            site = next((f for f in frames if not GENERIC.match(f)), frames[-1])
            sites[re.sub(r" \(.*\)$", "", site)[:120]] += size
    print(f"heap at the peak: {peak_heap / clients / 1024:.2f} KB per connection ({clients} connections)")
    for site, size in sites.most_common(20):
        print(f"{size / clients:10.0f} B  {site}")


main()
