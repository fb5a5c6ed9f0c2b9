#!/usr/bin/env python3
"""Checks that every public function of include/rill.h that takes or hands out a pointer or a
handle says who owns it: its doc comment has an "Ownership:" line.

A declaration is a "RILL_API ...;" statement. It takes or hands out a pointer when its return
type or a parameter has a '*' (opaque handles such as rill_loop * included) or is one of the
header's function-pointer typedefs (rill_send_cb, rill_post_fn, ...). Its doc comment is the
block comment right above it; declarations written one under the other with no blank line
between them share the comment above the first (rill_conn_set_ctx and rill_conn_ctx, say).

Usage: check_ownership.py [path/to/rill.h]. Exits 1 and lists each function without an
Ownership: line; exits 2 when the header cannot be read or holds no RILL_API function."""
import os
import re
import sys


def strip_line_comments(text):
    return re.sub(r"//[^\n]*", "", text)


def function_pointer_typedefs(text):
    """Names of 'typedef R (*name)(...)': passing one hands the engine a pointer."""
    return set(re.findall(r"typedef[^;{}]*?\(\s*\*\s*(\w+)\s*\)\s*\(", text))


def declarations(lines):
    """Yields (first line index, last line index, text) of each RILL_API statement."""
    i = 0
    while i < len(lines):
        if re.match(r"\s*RILL_API\b", lines[i]):
            j = i
            while ";" not in lines[j]:
                j += 1
                if j == len(lines):
                    raise SystemExit(f"unterminated declaration at line {i + 1}")
            yield i, j, " ".join(l.strip() for l in lines[i : j + 1])
            i = j + 1
        else:
            i += 1


def doc_comment_above(lines, first, decl_ends):
    """The block comment that ends on the line above `first`, skipping over declarations that
    are stacked directly above it (no blank line). None when there is none."""
    k = first - 1
    while k >= 0 and k in decl_ends:
        k = decl_ends[k] - 1  # jump to the line above that declaration's first line
    if k < 0 or not lines[k].rstrip().endswith("*/"):
        return None
    end = k
    while k >= 0 and "/*" not in lines[k]:
        k -= 1
    if k < 0:
        return None
    return "\n".join(lines[k : end + 1])


def name_of(decl):
    m = re.search(r"(\w+)\s*\(", decl.replace("RILL_API", "", 1))
    return m.group(1) if m else decl


def takes_pointer(decl, fnptr_types):
    body = decl.replace("RILL_API", "", 1)
    if "*" in body:
        return True
    return any(re.search(rf"\b{re.escape(t)}\b", body) for t in fnptr_types)


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "include", "rill.h")
    path = os.path.normpath(argv[1] if len(argv) > 1 else default)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        print(f"check_ownership: {e}", file=sys.stderr)
        return 2
    text = strip_line_comments(text)
    # The RILL_API macro's own definition is not a declaration.
    lines = [l if not re.match(r"\s*#\s*define\s+RILL_API\b", l) else "" for l in text.split("\n")]
    fnptr_types = function_pointer_typedefs(text)

    decls = list(declarations(lines))
    if not decls:
        print(f"check_ownership: no RILL_API function found in {path}", file=sys.stderr)
        return 2
    decl_ends = {last: first for first, last, _ in decls}

    missing = []
    checked = 0
    for first, _, decl in decls:
        if not takes_pointer(decl, fnptr_types):
            continue
        checked += 1
        doc = doc_comment_above(lines, first, decl_ends)
        if doc is None:
            missing.append((first + 1, name_of(decl), "no doc comment"))
        elif not re.search(r"\bOwnership:", doc):
            missing.append((first + 1, name_of(decl), "no Ownership: line"))

    if missing:
        print(f"FAIL: {len(missing)} of {checked} public functions that take or return a pointer "
              f"do not say who owns it ({path}):")
        for line, name, why in missing:
            print(f"  {path}:{line}: {name}: {why}")
        return 1
    print(f"OK: all {checked} public functions that take or return a pointer have an Ownership: "
          f"line ({len(decls)} RILL_API functions in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
