#!/usr/bin/env python3
"""Embeds one OpenCL source file as a C string, so clsa reads no file at run time.

Usage: embed_cl.py INPUT.cl OUTPUT.c
Defines `const char clsa_cl_<stem>[]` holding the file's bytes and a terminating NUL.
"""
import pathlib
import sys

src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
data = src.read_bytes()
name = "clsa_cl_" + src.stem
lines = []
for i in range(0, len(data), 16):
    lines.append("    " + ", ".join(str(b) for b in data[i:i + 16]) + ",")
dst.write_text(
    f"/* Generated from cl/{src.name} by cl/embed_cl.py. Do not edit. */\n"
    f"const char {name}[] = {{\n" + "\n".join(lines) + "\n    0\n};\n"
)
