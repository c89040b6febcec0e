#!/usr/bin/python3
"""Writes the seed corpus of every fuzz target into SEEDS/<target>/ from the shared fixtures, the
shipped configs and small files made here (Debian's python3 and python3-torch only)."""
import gzip, io, json, os, shutil, struct, sys, wave, zipfile
from pathlib import Path

root, fixtures, seeds = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])


def put(target, name, data):
    d = seeds / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def safetensors(tensors):
    header, blob = {"__metadata__": {"format": "pt"}}, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


put("safetensors", "small", safetensors({"a": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
                                         "b": ("I64", [1], struct.pack("<q", 7)), "c": ("BOOL", [2], b"\x01\x00")}))
for fixture in ("PerceiverForMaskedLM", "PerceiverForSequenceClassification"):
    for name in ("inputs.safetensors", "outputs.safetensors"):
        put("safetensors", f"{fixture}-{name}", (fixtures / fixture / name).read_bytes())

try:
    import torch
    for name, sd in {"floats": {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)},
                     "views": {"t": torch.arange(8.0).reshape(2, 4).t(), "i": torch.tensor([1, 2], dtype=torch.int64),
                               "m": torch.tensor([True, False])}}.items():
        buf = io.BytesIO()
        torch.save(sd, buf)
        put("torch_bin", name, buf.getvalue())
except ImportError:
    print("make_seeds: python3-torch missing, torch_bin seeds come from the fixtures only", file=sys.stderr)
smallest_bin = min((f for f in fixtures.glob("*/pytorch_model.bin")), key=lambda f: f.stat().st_size)
put("torch_bin", "fixture-" + smallest_bin.parent.name, smallest_bin.read_bytes())

for config in fixtures.glob("*/config.json"):
    put("config_json", config.parent.name, config.read_bytes())
for run in (root / "configs").glob("*.yaml"):
    put("run_yaml", run.name, run.read_bytes())

idx = b"\0\0\x08\x02" + struct.pack(">II", 2, 3) + bytes(range(6))
put("idx", "u8", idx)
put("idx", "f32", b"\0\0\x0d\x01" + struct.pack(">I", 2) + struct.pack(">2f", 1.5, -2))
put("idx", "u8.gz", gzip.compress(idx))
put("gzip", "text.gz", gzip.compress(b"hello gzip " * 20))
put("gzip", "two-members.gz", gzip.compress(b"abc") + gzip.compress(b"def", 0))
put("gzip", "idx.gz", gzip.compress(idx))

put("flo", "2x3", b"PIEH" + struct.pack("<ii", 3, 2) + struct.pack("<12f", *range(12)))

put("labelled_text", "csv", b"\x00text,label\n\"a, b\",x\nc,y\n")
put("labelled_text", "tsv", b"\x01text\tlabel\nhello\tpos\n")
put("labelled_text", "jsonl", b'\x02{"text": "a", "label": "x"}\n{"text": "b", "label": ["x", "y"]}\n')
put("labelled_text", "csv-no-header", b"\x04hello,1\nworld,2\n")

cases = json.loads((fixtures / "tokenizer" / "cases.json").read_text())
for i, case in enumerate(cases["encode"][:20]):
    put("tokenizer", f"encode-{i}", bytes([i * 37 % 256]) + case["text"].encode("utf-8", "surrogatepass"))

for name, (channels, width, rate) in {"mono16": (1, 2, 8000), "stereo16": (2, 2, 48000), "mono8": (1, 1, 16000)}.items():
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes((i * 7) % 256 for i in range(64 * channels * width)))
    put("wav", name, buf.getvalue())

# The kept regression inputs seed their targets too, except the large ones (slow to mutate).
for kept in (root / "tests" / "corpus").glob("*/*"):
    if kept.stat().st_size <= 65536:
        put(kept.parent.name, "kept-" + kept.name, kept.read_bytes())
