"""Checks models written by `perceiver export --triton` the way Triton's PyTorch backend would meet
them, without a server.

Usage: /usr/bin/python3 triton_check.py triton_model_config.proto CASE_DIR...
Each CASE_DIR holds repo/NAME/{config.pbtxt,perceiver.json,1/model.pt}, inputs.safetensors (the
inputs Triton passes, HF names, batch size 3) and expected.safetensors (the eager outputs).

config.pbtxt is parsed with protobuf's text format against triton_model_config.proto (Triton's
ModelConfig field numbers and enum values, compiled here with protoc), then checked against the
module itself: forward's arguments are the config's inputs in order, all plain Tensors; it returns a
tuple of the config's outputs, named `<name>__<index>`; types and dims agree with the tensors passed
and returned, -1 exactly where a size is free (a second call at batch size 1 and shorter sequences
shows which output sizes follow the inputs); max_batch_size > 0 exactly when every input and output
has the batch first. Prints one line per case; exits 1 when any check fails.
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import torch
from google.protobuf import text_format

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_check import read_safetensors  # noqa: E402

TYPES = {
    torch.bool: "TYPE_BOOL", torch.uint8: "TYPE_UINT8", torch.int8: "TYPE_INT8", torch.int16: "TYPE_INT16",
    torch.int32: "TYPE_INT32", torch.int64: "TYPE_INT64", torch.float16: "TYPE_FP16",
    torch.float32: "TYPE_FP32", torch.float64: "TYPE_FP64",
}


def load_proto(proto):
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["protoc", "-I", os.path.dirname(proto), "--python_out", out, proto], check=True)
        sys.path.insert(0, out)
        import triton_model_config_pb2

        sys.path.remove(out)
        return triton_model_config_pb2


def report(case, architecture, problems):
    print("%s %s: %s" % (architecture, case, "; ".join(problems) if problems else "ok"))
    return not problems


def full_dims(config, dims):
    return ([-1] if config.max_batch_size > 0 else []) + list(dims)


def shape_problems(what, dims, shapes):
    """dims (-1 = free) against the actual shapes of two calls: equal rank, fixed sizes equal, free where they differ."""
    problems = []
    for shape in shapes:
        if len(shape) != len(dims):
            return ["%s: dims %s, got shape %s" % (what, dims, list(shape))]
    for d, size in enumerate(dims):
        seen = {shape[d] for shape in shapes}
        if size != -1 and seen != {size}:
            problems.append("%s: dim %d is %d in config.pbtxt, got %s" % (what, d, size, sorted(seen)))
        if size == -1 and len(seen) == 1 and what.startswith("output"):
            problems.append("%s: dim %d is -1 in config.pbtxt but stays %d" % (what, d, seen.pop()))
    return problems


def smaller(args, specs):
    """The inputs at batch size 1 and every other free size one shorter (the same cut per name)."""
    out = []
    for tensor, spec in zip(args, specs):
        for d, size in enumerate(spec["shape"]):
            if isinstance(size, str):
                keep = 1 if size == "batch" else max(1, tensor.shape[d] - 1)
                tensor = tensor.narrow(d, 0, keep)
        out.append(tensor)
    return out


def check(case, pb2):
    problems = []
    models = glob.glob(os.path.join(case, "repo", "*", "config.pbtxt"))
    if len(models) != 1:
        return report(case, "?", ["%d models under repo/" % len(models)])
    folder = os.path.dirname(models[0])
    with open(models[0]) as f:
        config = text_format.Parse(f.read(), pb2.ModelConfig())
    with open(os.path.join(folder, "perceiver.json")) as f:
        manifest = json.load(f)
    if config.name != os.path.basename(folder):
        problems.append("name %r in a folder named %r" % (config.name, os.path.basename(folder)))
    if config.platform != "pytorch_libtorch":
        problems.append("platform %r" % config.platform)
    if manifest["format"] != "perceiver-cpp-triton":
        problems.append("perceiver.json format %r" % manifest["format"])
    kind = pb2.ModelInstanceGroup.KIND_GPU if manifest["device"].startswith("cuda") else pb2.ModelInstanceGroup.KIND_CPU
    if [g.kind for g in config.instance_group] != [kind]:
        problems.append("instance_group %s" % config.instance_group)

    module = torch.jit.load(os.path.join(folder, "1", "model.pt"), map_location="cpu")
    # Triton maps inputs to forward's argument names, all of which must be plain Tensors.
    arguments = module.forward.schema.arguments[1:]
    names = [i.name for i in config.input]
    if [a.name for a in arguments] != names:
        problems.append("forward(%s) but config inputs %s" % ([a.name for a in arguments], names))
    if any(str(a.type) != "Tensor" for a in arguments):
        problems.append("forward takes %s; Triton passes Tensors" % [str(a.type) for a in arguments])

    by_argument = {spec["argument"]: spec for spec in manifest["inputs"]}
    inputs = read_safetensors(os.path.join(case, "inputs.safetensors"))
    expected = read_safetensors(os.path.join(case, "expected.safetensors"))
    specs = [by_argument[i.name] for i in config.input]
    args = [inputs[spec["name"]] for spec in specs]
    for spec in manifest["inputs"]:  # left out only when optional and without a batch dimension
        if spec["argument"] not in names and (not spec["optional"] or spec["shape"][0] == "batch"):
            problems.append("input %s is missing from config.pbtxt" % spec["name"])

    with torch.no_grad():
        outputs = module(*args)
        second = module(*smaller(args, specs))
    if not isinstance(outputs, tuple) or len(outputs) != len(config.output):
        problems.append("returns %s, config.pbtxt has %d outputs" % (type(outputs).__name__, len(config.output)))
        return report(case, manifest["architecture"], problems)

    for entry, tensor, spec in zip(config.input, args, specs):
        what = "input %s" % entry.name
        if pb2.DataType.Name(entry.data_type) != TYPES.get(tensor.dtype):
            problems.append("%s: %s, passed %s" % (what, pb2.DataType.Name(entry.data_type), tensor.dtype))
        dims = full_dims(config, entry.dims)
        free = [-1 if isinstance(size, str) else size for size in spec["shape"]]
        if dims != free:
            problems.append("%s: dims %s, perceiver.json's shape %s" % (what, dims, spec["shape"]))
        problems += shape_problems(what, dims, [tuple(tensor.shape)])

    batch_first = all(spec["shape"][0] == "batch" for spec in specs)
    for i, (entry, got, small) in enumerate(zip(config.output, outputs, second)):
        what = "output %s" % entry.name
        hf = manifest["outputs"][i]
        match = re.fullmatch(r"([A-Za-z0-9]+(?:_[A-Za-z0-9]+)*)__(\d+)", entry.name)
        if not match or int(match.group(2)) != i:
            problems.append("%s: not <name>__%d" % (what, i))
        if manifest["triton"]["outputs"][i]["output"] != hf:
            problems.append("%s: perceiver.json maps it to %s, expected %s" % (
                what, manifest["triton"]["outputs"][i]["output"], hf))
        if pb2.DataType.Name(entry.data_type) != TYPES.get(got.dtype):
            problems.append("%s: %s, returned %s" % (what, pb2.DataType.Name(entry.data_type), got.dtype))
        problems += shape_problems(what, full_dims(config, entry.dims), [tuple(got.shape), tuple(small.shape)])
        batch_first = batch_first and got.dim() > 0 and got.shape[0] == 3 and small.shape[0] == 1
        want = expected[hf]
        if got.shape != want.shape:
            problems.append("%s: shape %s, eager %s" % (what, tuple(got.shape), tuple(want.shape)))
        elif not torch.allclose(got, want, atol=1e-5, rtol=1e-5):
            problems.append("%s: differs from eager by up to %g" % (what, (got - want).abs().max().item()))
    if (config.max_batch_size > 0) != batch_first:
        problems.append("max_batch_size %d, but the batch is %sfirst everywhere" % (
            config.max_batch_size, "" if batch_first else "not "))

    return report(case, manifest["architecture"], problems)


if __name__ == "__main__":
    pb2 = load_proto(os.path.abspath(sys.argv[1]))
    results = [check(case, pb2) for case in sys.argv[2:]]
    sys.exit(0 if results and all(results) else 1)
