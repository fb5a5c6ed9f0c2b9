#!/usr/bin/env python3
"""Keeps the man pages of man/ from drifting away from the header and the tools.

Section 3: every RILL_API function of include/rill.h has a page man/man3/<name>.3, either the
page itself or a one-line ".so man3/<page>.3" link to the page of its family. That page names
the function in NAME, and its SYNOPSIS holds the function's declaration exactly as the header
writes it (compared with whitespace normalised, RILL_API left out). Every declaration in a
SYNOPSIS must be one of the header's (a function or a typedef), so a prototype that changes
in the header fails here until its page follows.

Every page (section 1 and 3) must render with `groff -ww -z -man` printing nothing (skipped,
with a message, when groff is not installed); a .so link must name a page that is no link.

Section 1: for each TOOL=BINARY argument, man/man1/TOOL.1 exists, `BINARY --help` exits 0, and
every --long-option its help text prints appears on the page; `BINARY --version` prints
"TOOL X.Y.Z" and exits 0.

Usage: check_man.py --header include/rill.h --man man [--tool rill-echo=/path/rill-echo ...]
Exits 1 listing every problem found; 2 when the inputs cannot be read."""
import argparse
import os
import re
import shutil
import subprocess
import sys


def normalise(decl):
    """One spacing for a C declaration: single spaces, none around punctuation."""
    d = decl.replace("RILL_API", " ")
    d = re.sub(r"\s+", " ", d).strip()
    d = re.sub(r"\s*([(),*;\[\]])\s*", r"\1", d)
    return d


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def header_declarations(path):
    """(functions: name -> normalised declaration, typedefs: set of normalised typedefs)."""
    with open(path, encoding="utf-8") as f:
        text = strip_comments(f.read())
    text = re.sub(r"^\s*#.*$", "", text, flags=re.M)  # preprocessor lines
    funcs = {}
    for m in re.finditer(r"\bRILL_API\b[^;{}]*;", text):
        decl = normalise(m.group(0))
        name = re.search(r"(\w+)\(", decl)
        if not name:
            raise SystemExit(f"check_man: cannot find the name in '{decl}'")
        funcs[name.group(1)] = decl
    typedefs = {normalise(m.group(0)) for m in re.finditer(r"\btypedef\b[^;{}]*;", text)}
    return funcs, typedefs


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def so_target(text):
    """The page a ".so man3/x.3" link file names, or None for a page of its own."""
    lines = [l for l in text.splitlines() if l.strip() and not l.startswith('.\\"')]
    if len(lines) == 1 and lines[0].startswith(".so "):
        return lines[0][4:].strip()
    return None


def sections(text):
    """name -> list of lines of each .SH section."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.match(r'\.SH\s+"?([^"]*)"?\s*$', line)
        if m:
            cur = m.group(1).strip().upper()
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return out


def synopsis_declarations(lines):
    """The C statements of a SYNOPSIS: its text lines (requests and #include left out), joined
    and cut at each ';'."""
    text = []
    for line in lines:
        if line.startswith(".") or line.startswith("'"):
            m = re.match(r"\.B\s+(.*)$", line)  # ".B text": bold text, kept unless an #include
            if not m or m.group(1).startswith("#"):
                continue
            line = m.group(1).strip('"')
        line = re.sub(r"\\f[BIRP]", "", line).replace("\\-", "-").replace("\\e", "\\")
        text.append(line)
    joined = " ".join(text)
    return [normalise(s + ";") for s in joined.split(";") if s.strip()]


def name_section_names(lines):
    text = " ".join(l for l in lines if not l.startswith("."))
    head = text.split("\\-")[0]
    return {n.strip() for n in head.split(",") if n.strip()}


def groff_problems(mandir, rel):
    r = subprocess.run(["groff", "-ww", "-z", "-man", rel], cwd=mandir, capture_output=True,
                       text=True, timeout=30)
    out = (r.stdout + r.stderr).strip()
    if r.returncode != 0 or out:
        return [f"{rel}: groff -ww -z -man: {out or 'exit %d' % r.returncode}"]
    return []


def check_section3(header, mandir, problems):
    funcs, typedefs = header_declarations(header)
    if not funcs:
        raise SystemExit(2)
    known = set(funcs.values()) | typedefs
    man3 = os.path.join(mandir, "man3")
    pages = {}  # page path relative to mandir -> (NAME names, SYNOPSIS declarations)
    for fn in sorted(os.listdir(man3)) if os.path.isdir(man3) else []:
        if not fn.endswith(".3"):
            continue
        rel = "man3/" + fn
        text = read(os.path.join(mandir, rel))
        target = so_target(text)
        if target is not None:
            if not os.path.isfile(os.path.join(mandir, target)):
                problems.append(f"{rel}: .so names {target}, which does not exist")
            elif so_target(read(os.path.join(mandir, target))) is not None:
                problems.append(f"{rel}: .so names {target}, itself a link")
            continue
        secs = sections(text)
        for s in ("NAME", "SYNOPSIS", "DESCRIPTION", "RETURN VALUE", "SEE ALSO"):
            if s not in secs and not (s == "RETURN VALUE" and fn == "rill.3"):
                problems.append(f"{rel}: no {s} section")
        decls = synopsis_declarations(secs.get("SYNOPSIS", []))
        for d in decls:
            if d not in known:
                problems.append(f"{rel}: SYNOPSIS declares '{d}', which is not in rill.h "
                                "(changed or removed there?)")
        pages[rel] = (name_section_names(secs.get("NAME", [])), decls)
    for name, decl in sorted(funcs.items()):
        rel = f"man3/{name}.3"
        path = os.path.join(mandir, rel)
        if not os.path.isfile(path):
            problems.append(f"{name}: no page {rel}")
            continue
        target = so_target(read(path)) or rel
        if target not in pages:
            continue  # reported above
        names, decls = pages[target]
        if name not in names:
            problems.append(f"{name}: {target} does not name it in NAME")
        if decl not in decls:
            problems.append(f"{name}: the SYNOPSIS of {target} does not declare '{decl}' "
                            "(the header's declaration)")


def check_section1(tools, mandir, problems):
    for spec in tools:
        tool, _, binary = spec.partition("=")
        rel = f"man1/{tool}.1"
        path = os.path.join(mandir, rel)
        if not os.path.isfile(path):
            problems.append(f"{tool}: no page {rel}")
            continue
        page = read(path).replace("\\-", "-").replace("\\fB", "").replace("\\fR", "")
        page = page.replace("\\fI", "").replace("\\fP", "")
        r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            problems.append(f"{tool}: --help exited {r.returncode}")
        opts = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", r.stdout)))
        if "--version" not in opts:
            problems.append(f"{tool}: --help does not list --version")
        for o in opts:
            if not re.search(r"(?<![\w-])" + re.escape(o) + r"(?![\w-])", page):
                problems.append(f"{tool}: {o} (in --help) is not on {rel}")
        r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        if r.returncode != 0 or not re.fullmatch(re.escape(tool) + r" \d+\.\d+\.\d+\n",
                                                 r.stdout):
            problems.append(f"{tool}: --version printed {r.stdout!r} and exited {r.returncode}, "
                            f"not '{tool} X.Y.Z' and 0")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--header", required=True)
    ap.add_argument("--man", required=True)
    ap.add_argument("--tool", action="append", default=[], help="NAME=BINARY")
    a = ap.parse_args()
    problems = []
    check_section3(a.header, a.man, problems)
    check_section1(a.tool, a.man, problems)
    if shutil.which("groff"):
        for sec in ("man1", "man3"):
            d = os.path.join(a.man, sec)
            for fn in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                # A .so link renders as the page it names, which is checked on its own.
                if so_target(read(os.path.join(d, fn))) is None:
                    problems += groff_problems(a.man, f"{sec}/{fn}")
    else:
        print("check_man: groff not installed: rendering not checked "
              "(apt-get install groff-base)")
    for p in problems:
        print(p)
    if problems:
        print(f"check_man: {len(problems)} problem(s)")
        return 1
    print("check_man: all pages present, synopses match rill.h, every --help option documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
