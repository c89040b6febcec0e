#!/usr/bin/env python3
"""PerceiverForTokenClassification in Python (perceiver_token_classification.py, on transformers' Perceiver
modules) against perceiver-cpp's C++ head.

    check_token_classification.py check --perceiver build/perceiver [--transformers-src DIR] [--work DIR]
    check_token_classification.py make-fixture OUT_DIR [--transformers-src DIR]

`check` (what scripts/check-hf-token-classification.sh runs): makes a small token-classification model with random
weights in Python and saves it as HF does (config.json + pytorch_model.bin); `perceiver convert` turns that into
model.safetensors with our writer; Python loads that folder back (from_pretrained with transformers, else a strict
load_state_dict: the same names and shapes or an error); `perceiver infer` runs our C++ head on the same folder, and
every output (loss, logits, and with output_attentions / output_hidden_states the attentions and hidden states) is
compared with Python's: |ours - python| <= 1e-5 + 1e-5 * |python|. Prints the largest absolute difference per case;
exits 1 on any mismatch.

`make-fixture` writes a parity fixture in the layout of ../shared/fixtures/hf (config.json, model.safetensors,
pytorch_model.bin, inputs.safetensors, outputs.safetensors, meta.json, and index.json above it): the test suite's
tests/fixtures/hf_modules/ is made by it (see its README.md).

--transformers-src: a transformers source tree (its src/ folder or a folder holding transformers/models/perceiver/),
imported with bench/hf_reference.py's stand-ins for the framework classes (plus the names 4.57 renamed or moved);
without it the installed transformers is used. Needs torch and numpy only (Debian's python3-torch): safetensors files are read and written with json + struct.
"""
import argparse
import hashlib
import json
import pathlib
import struct
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ beside python/ and bench/ (imported from here)
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

CONLL_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


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


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        array = tensors[name].detach().cpu().contiguous().numpy()
        blob = array.tobytes()
        header[name] = {"dtype": NAMES[array.dtype], "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def import_classes(transformers_src):
    """(PerceiverConfig, PerceiverForTokenClassification, real_transformers, version, modeling file)"""
    if transformers_src:
        sys.path.insert(0, str(ROOT / "bench"))
        import hf_reference  # the stand-ins of `scripts/bench-compare.sh hf`

        stand_ins = hf_reference._framework_stand_ins

        def with_new_names(torch_module):
            table = stand_ins(torch_module)
            config_utils = table["transformers.configuration_utils"]
            config_utils.setdefault("PreTrainedConfig", config_utils["PretrainedConfig"])  # its name from 4.57 on
            # `from ... import initialization as init` (4.57 on) reads an attribute of the package.
            table.setdefault("transformers", {}).setdefault(
                "initialization", types.SimpleNamespace(**table.get("transformers.initialization", vars(torch.nn.init))))
            return table

        hf_reference._framework_stand_ins = with_new_names
        modeling, version = hf_reference.import_perceiver(transformers_src, torch)
        real = False
    else:
        import transformers
        from transformers.models.perceiver import modeling_perceiver as modeling

        version, real = transformers.__version__, True
    sys.path.insert(0, str(HERE))
    from perceiver_token_classification import PerceiverForTokenClassification

    return modeling.PerceiverConfig, PerceiverForTokenClassification, real, version, pathlib.Path(modeling.__file__)


def config_dict(**sizes):
    doc = dict(
        model_type="perceiver",
        architectures=["PerceiverForTokenClassification"],
        id2label={str(i): name for i, name in enumerate(CONLL_LABELS)},
        label2id={name: i for i, name in enumerate(CONLL_LABELS)},
        vocab_size=262,
        attention_probs_dropout_prob=0.1,  # off in eval mode; there so that eval mode is what is compared
    )
    doc.update(sizes)
    return doc


def make_config(config_class, doc):
    kwargs = dict(doc)
    kwargs["id2label"] = {int(k): v for k, v in doc["id2label"].items()}
    kwargs["num_labels"] = len(doc["id2label"])  # the stand-in PretrainedConfig does not derive it
    return config_class(**kwargs)


def random_model(config_class, model_class, doc, seed):
    """HF's initialisation, then seeded noise on every parameter (so that no weight is 0 or 1)."""
    torch.manual_seed(seed)
    model = model_class(make_config(config_class, doc))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def load_model(config_class, model_class, real, folder):
    if real:
        return model_class.from_pretrained(folder).eval()
    doc = json.loads((pathlib.Path(folder) / "config.json").read_text())
    model = model_class(make_config(config_class, doc))
    model.load_state_dict(read_safetensors(pathlib.Path(folder) / "model.safetensors"), strict=True)
    return model.eval()


def token_inputs(batch, seq_len, num_labels, pad_rows, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(6, 262, (batch, seq_len), generator=g)
    ids[:, 0] = 4  # [CLS]
    mask = torch.ones(batch, seq_len, dtype=torch.long)
    labels = torch.randint(0, num_labels, (batch, seq_len), generator=g)
    labels[:, 0] = -100
    labels[torch.rand(batch, seq_len, generator=g) < 0.2] = -100  # continuation bytes of words
    for row in range(min(pad_rows, batch)):
        padded = seq_len // 3 + row
        ids[row, -padded:] = 0  # [PAD]
        mask[row, -padded:] = 0
        labels[row, -padded:] = -100
    return {"inputs": ids, "attention_mask": mask, "labels": labels}


def flat_outputs(out):
    flat = {"logits": out.logits}
    if out.loss is not None:
        flat["loss"] = out.loss
    for group in ("hidden_states", "attentions", "cross_attentions"):
        for i, t in enumerate(getattr(out, group) or ()):
            flat[f"{group}.{i}"] = t
    return {k: v.detach().float().contiguous() for k, v in flat.items()}


def compare(want, got):
    problems, worst = [], 0.0
    for name in sorted(set(want) | set(got)):
        if name not in got or name not in want:
            problems.append(f"{name}: only in {'python' if name in want else 'perceiver infer'}")
            continue
        a, b = want[name], got[name]
        if a.shape != b.shape:
            problems.append(f"{name}: shape {tuple(b.shape)}, python {tuple(a.shape)}")
            continue
        diff = (a - b).abs()
        worst = max(worst, diff.max().item() if diff.numel() else 0.0)
        bad = diff > 1e-5 + 1e-5 * a.abs()
        if bad.any():
            problems.append(f"{name}: {int(bad.sum())} of {a.numel()} differ, by up to {diff.max().item():.3g}")
    return problems, worst


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr}{r.stdout}")
    return r.stdout


def check(args):
    config_class, model_class, real, version, modeling_file = import_classes(args.transformers_src)
    print(f"transformers {version}: {modeling_file}")
    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="perceiver-token-classification-") as work:
            return check_in(args, pathlib.Path(work), config_class, model_class, real)
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    status = check_in(args, work, config_class, model_class, real)
    print(f"model folders and tensors kept in {work}")
    return status


def check_in(args, work, config_class, model_class, real):
    sizes = dict(d_model=64, d_latents=96, num_latents=16, num_blocks=2, num_self_attends_per_block=2,
                 num_self_attention_heads=8, num_cross_attention_heads=4, max_position_embeddings=48)
    failed, overall = False, 0.0
    for concat in (False, True):
        print(f"concat_preprocessed_input={concat}:")
        doc = config_dict(**sizes, **({"concat_preprocessed_input": True} if concat else {}))
        folder = work / ("concat" if concat else "plain")
        folder.mkdir(exist_ok=True)
        worst, bad = check_config(args, folder, config_class, model_class, real, doc, concat)
        overall, failed = max(overall, worst), failed or bad
    print(f"max abs difference over all outputs: {overall:.3g} ({'MISMATCH' if failed else 'ok'})")
    return 1 if failed else 0


def check_config(args, work, config_class, model_class, real, doc, concat):
    model = random_model(config_class, model_class, doc, seed=14971)

    # 1. Python writes the model as HF's save_pretrained does (config.json + pytorch_model.bin).
    written = work / "python"
    written.mkdir(exist_ok=True)
    if real:
        model.save_pretrained(written, safe_serialization=False)
    else:
        (written / "config.json").write_text(json.dumps(doc, indent=2))
        torch.save(model.state_dict(), written / "pytorch_model.bin")
    # 2. Our library rewrites its weights as model.safetensors; 3. Python loads that folder back.
    converted = work / "converted"
    run([args.perceiver, "convert", "--in", written, "--out", converted])
    reloaded = load_model(config_class, model_class, real, converted)
    for (name, a), (other, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert name == other and torch.equal(a, b), f"{name} changed on the way through perceiver convert"

    # 4. The same inputs through both; perceiver infer builds our C++ head from the converted folder.
    cases = [
        ("seq_len 40 < max_position_embeddings, padded rows", token_inputs(3, 40, len(CONLL_LABELS), 2, 1), False),
        ("seq_len 48 = max_position_embeddings, no padding", token_inputs(2, 48, len(CONLL_LABELS), 0, 2), False),
        ("seq_len 17, with attentions and hidden states", token_inputs(2, 17, len(CONLL_LABELS), 1, 3), True),
    ]
    failed, overall = False, 0.0
    for i, (title, inputs, everything) in enumerate(cases):
        with torch.no_grad():
            want = flat_outputs(reloaded(**inputs, output_attentions=everything, output_hidden_states=everything))
        # With concat, Python pads inputs shorter than max_position_embeddings to that length, so its
        # cross-attentions have those columns (encoder) and rows (decoder) where ours have the input's
        # length: only logits, loss, latents and self-attentions compare there.
        compared = lambda k: not (concat and inputs["inputs"].shape[1] < doc["max_position_embeddings"]  # noqa: E731
                                  and k.startswith("cross_attentions."))
        want = {k: v for k, v in want.items() if compared(k)}
        write_safetensors(work / f"in{i}.safetensors", inputs)
        extra = ["--output-attentions", "--output-hidden-states"] if everything else []
        run([args.perceiver, "infer", "--model", converted, "--inputs", work / f"in{i}.safetensors",
             "--output", work / f"out{i}.safetensors"] + extra)
        got = {k: v for k, v in read_safetensors(work / f"out{i}.safetensors").items() if compared(k)}
        problems, worst = compare(want, got)
        overall = max(overall, worst)
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in want.items() if k in ("loss", "logits"))
        print(f"  {title}: {len(want)} outputs ({shapes}), max |ours - python| = {worst:.3g}: "
              + ("; ".join(problems) if problems else "ok"))
        failed |= bool(problems)
    return overall, failed


# The fixtures make-fixture writes: (folder name, extra config keys, seed, output_attentions). With
# concat_preprocessed_input the Python class pads inputs shorter than max_position_embeddings, so its
# cross-attentions have that length where ours have the input's: that fixture compares the rest.
FIXTURES = [
    ("PerceiverForTokenClassification", {}, 15103, True),
    ("PerceiverForTokenClassificationConcatInput", {"concat_preprocessed_input": True}, 15104, False),
]


def make_fixture(args):
    config_class, model_class, real, version, modeling_file = import_classes(args.transformers_src)
    architecture = "PerceiverForTokenClassification"
    out = pathlib.Path(args.out)
    entries = []
    for name, extra, seed, attentions in FIXTURES:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        doc = config_dict(d_model=32, d_latents=32, num_latents=8, num_blocks=1, num_self_attends_per_block=2,
                          num_self_attention_heads=8, num_cross_attention_heads=8, max_position_embeddings=32,
                          **extra)
        model = random_model(config_class, model_class, doc, seed)
        inputs = token_inputs(2, 24, len(CONLL_LABELS), 1, seed)
        kwargs = {"inputs": "$inputs", "attention_mask": "$attention_mask", "labels": "$labels",
                  "output_attentions": attentions, "output_hidden_states": True, "return_dict": True}
        with torch.no_grad():
            outputs = flat_outputs(model(**inputs, output_attentions=attentions, output_hidden_states=True,
                                         return_dict=True))

        (folder / "config.json").write_text(json.dumps(doc, indent=2) + "\n")
        state = model.state_dict()
        write_safetensors(folder / "model.safetensors", state)
        torch.save(state, folder / "pytorch_model.bin")
        write_safetensors(folder / "inputs.safetensors", inputs)
        write_safetensors(folder / "outputs.safetensors", outputs)
        sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
        meta = {
            "name": name,
            "set": "perceiver-cpp",
            "architecture": architecture,
            "seed": seed,
            "torch_version": torch.__version__,
            "mode": "eval (dropout off); torch.no_grad()",
            "hf_source": {"transformers": version, "modeling_perceiver.py sha256": sha(modeling_file),
                          "note": "transformers has no PerceiverForTokenClassification: the model is "
                                  "python/perceiver_token_classification.py on transformers' Perceiver modules"},
            "generator": "python/check_token_classification.py make-fixture",
            "forward_call": "model(**forward_kwargs) with '$name' replaced by tensor 'name' of inputs.safetensors",
            "forward_kwargs": kwargs,
            "inputs": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                       for k, v in inputs.items()},
            "outputs": {k: {"dtype": "float32", "shape": list(v.shape)} for k, v in outputs.items()},
            "state_dict_keys": list(state),
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "weights_note": "HF's _init_weights plus seeded normal noise (std 0.05) on every parameter",
        }
        (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        entries.append({"name": name, "kind": "model", "architecture": architecture,
                        "num_parameters": meta["num_parameters"],
                        "files": ["config.json", "model.safetensors", "inputs.safetensors", "outputs.safetensors",
                                  "meta.json", "pytorch_model.bin"]})
        print(f"wrote {folder} ({meta['num_parameters']} parameters, outputs {', '.join(outputs)})")
    index = {
        "set": "perceiver-cpp",
        "note": "fixtures for heads transformers lacks, made with transformers' Perceiver modules by "
                "python/check_token_classification.py make-fixture; read with ../shared/fixtures/hf by "
                "tests/perceiver/parity_support.cpp",
        "fixtures": entries,
    }
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="compare perceiver infer with the Python class")
    c.add_argument("--perceiver", required=True, help="the perceiver CLI (build/perceiver)")
    c.add_argument("--work", help="keep the model folders and tensors in this folder (default: a temporary one)")
    m = sub.add_parser("make-fixture", help="write a parity fixture folder")
    m.add_argument("out")
    for p in (c, m):
        p.add_argument("--transformers-src", help="a transformers source tree, instead of the installed package")
    args = parser.parse_args()
    return check(args) if args.command == "check" else make_fixture(args)


if __name__ == "__main__":
    sys.exit(main())
