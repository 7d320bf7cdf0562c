#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""Lists the public names of include/ddpm that docs/api.md does not mention.

A public name is a class, struct, enum, concept, function, variable template or alias declared at namespace
scope (column 0, as the headers are written) outside a `detail` namespace. A name counts as documented when
docs/api.md contains it as a word. Exit status 1 if any is missing (the names are printed with the header
that declares them), else 0.

    /usr/bin/python3 scripts/check_api_names.py [--root DIR]
"""
import argparse
import pathlib
import re
import sys

DECL = [
    re.compile(r"^(?:class|struct)\s+(?:\[\[[^\]]*\]\]\s*)?([A-Za-z_]\w*)"),
    re.compile(r"^enum\s+(?:class\s+)?([A-Za-z_]\w*)"),
    re.compile(r"^concept\s+([A-Za-z_]\w*)"),
    re.compile(r"^using\s+([A-Za-z_]\w*)\s*(?:\[\[[^\]]*\]\]\s*)?="),
    re.compile(r"^(?:inline\s+)?(?:constexpr\s+)?(?:inline\s+)?[A-Za-z_][\w:<>, ]*\s+([A-Za-z_]\w*)\s*(?:=|\{|;)"),
    # a function: return type then name( at column 0
    re.compile(r"^(?:\[\[[^\]]*\]\]\s*)*(?:inline\s+|constexpr\s+|static\s+)*[A-Za-z_][\w:<>, *&]*?[\s*&]([A-Za-z_]\w*)\s*\("),
]
KEYWORDS = {"return", "if", "for", "while", "switch", "sizeof", "operator", "namespace", "template", "requires",
            "static_assert", "decltype", "noexcept", "main"}


def public_names(header: pathlib.Path):
    names = []
    depth_detail = 0
    ns_stack = []
    for line in header.read_text().splitlines():
        m = re.match(r"^namespace\s+([\w:]+)\s*\{", line)
        if m:
            ns_stack.append(m.group(1))
            if m.group(1).split("::")[-1] == "detail":
                depth_detail += 1
            continue
        m = re.match(r"^\}\s*//\s*namespace\s*([\w:]*)", line)
        if m and ns_stack:
            if ns_stack.pop().split("::")[-1] == "detail":
                depth_detail -= 1
            continue
        if depth_detail or not ns_stack or not line or line[0] in " \t#/}{)":
            continue
        if line.startswith("template"):
            rest = re.sub(r"^template\s*<.*?>\s*", "", line)
            if rest == line or not rest:
                continue
            line = rest
        for pattern in DECL:
            m = pattern.match(line)
            if m and m.group(1) not in KEYWORDS and not m.group(1).startswith("DDPM_"):
                names.append(m.group(1))
                break
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=pathlib.Path(__file__).resolve().parent.parent, type=pathlib.Path)
    args = parser.parse_args()
    api = (args.root / "docs" / "api.md").read_text()
    words = set(re.findall(r"[A-Za-z_]\w*", api))
    missing = {}
    for header in sorted((args.root / "include" / "ddpm").rglob("*.hpp")):
        if "detail" in header.relative_to(args.root / "include" / "ddpm").parts:
            continue
        for name in public_names(header):
            if name not in words:
                missing.setdefault(name, str(header.relative_to(args.root / "include")))
    for name, header in sorted(missing.items(), key=lambda kv: (kv[1], kv[0])):
        print(f"{header}: {name}")
    print(f"{len(missing)} public name(s) missing from docs/api.md", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
