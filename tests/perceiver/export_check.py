"""Runs files written by `perceiver export` with Python's torch.jit.load and compares their outputs
with the eager C++ model's.

Usage: /usr/bin/python3 export_check.py CASE_DIR...
Each CASE_DIR holds model.pt, inputs.safetensors (HF's input names) and expected.safetensors (the
eager outputs). The forward's arguments are taken in the order the archive's perceiver.json lists
them; a missing optional one is passed as None. Prints one line per case; exits 1 when any differs.
Needs only torch and numpy (Debian's python3-torch): safetensors files are read with json + struct.
"""
import json
import struct
import sys

import numpy as np
import torch

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors


def check(case):
    extra = {"perceiver.json": ""}
    module = torch.jit.load(case + "/model.pt", _extra_files=extra)
    manifest = json.loads(extra["perceiver.json"])
    inputs = read_safetensors(case + "/inputs.safetensors")
    expected = read_safetensors(case + "/expected.safetensors")
    args = [inputs.get(spec["name"]) for spec in manifest["inputs"]]
    with torch.no_grad():
        outputs = module(*args)
    problems = []
    if sorted(outputs) != sorted(expected):
        problems.append("outputs %s, expected %s" % (sorted(outputs), sorted(expected)))
    for name, want in expected.items():
        got = outputs.get(name)
        if got is None:
            continue
        if got.shape != want.shape:
            problems.append("%s: shape %s, expected %s" % (name, tuple(got.shape), tuple(want.shape)))
        elif not torch.allclose(got, want, atol=1e-5, rtol=1e-5):
            problems.append("%s: differs by up to %g" % (name, (got - want).abs().max().item()))
    print("%s %s: %s" % (manifest["architecture"], case, "; ".join(problems) if problems else "ok"))
    return not problems


if __name__ == "__main__":
    results = [check(case) for case in sys.argv[1:]]
    sys.exit(0 if results and all(results) else 1)
