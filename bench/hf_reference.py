#!/usr/bin/env python3
"""The `perceiver bench` workloads run through Hugging Face's Python Perceiver, the reference a user
would otherwise pick, timed the same way (median of the timed iterations, device synchronised).

    python3 bench/hf_reference.py [--device cpu|cuda] [--precision fp32|bf16] [--only NAME ...] [--iters N]
                                  [--threads N] [--transformers-src DIR]

Prints one JSON object per line with the fields `perceiver bench --json` uses for the same names.
The model configurations mirror trainers/bench.cpp's workloads; keep them in step.

Without the `transformers` package (Debian 12 packages neither it nor huggingface_hub, tokenizers and
safetensors, which it imports), --transformers-src names a transformers source tree (its `src/`
folder, or a folder holding `transformers/models/perceiver/`): its modeling_perceiver.py and
configuration_perceiver.py run as they are, with small stand-ins for the framework classes they import
(PreTrainedModel, PretrainedConfig, ModelOutput, ACT2FN, apply_chunking_to_forward, docstring
decorators). The model's arithmetic is HF's own; the stand-ins only construct it. Needs numpy
(python3-numpy).

On the CPU in bf16, LibTorch 1.13's layer_norm refuses a bf16 input with fp32 weights under autocast,
so the LayerNorms are fed fp32 there (as our trainer's bf16 does).
"""
import argparse
import dataclasses
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import pathlib
import re
import resource
import statistics
import sys
import time
import types


def workloads():
    mlm = dict(d_model=768, num_latents=256, d_latents=512, num_blocks=1, num_self_attends_per_block=6,
               num_self_attention_heads=8, num_cross_attention_heads=8, vocab_size=262,
               attention_probs_dropout_prob=0.0)
    full = dict(d_model=768, d_latents=1280, num_latents=256, num_self_attends_per_block=26,
                num_self_attention_heads=8, num_cross_attention_heads=8, qk_channels=256, v_channels=1280,
                max_position_embeddings=2048)
    img = dict(d_model=261, num_latents=128, d_latents=256, num_self_attends_per_block=4, num_self_attention_heads=8,
               num_cross_attention_heads=1, image_size=32, num_labels=10, attention_probs_dropout_prob=0.0)
    flow = dict(d_model=322, num_latents=256, d_latents=256, num_self_attends_per_block=6,
                num_self_attention_heads=8, num_cross_attention_heads=1, train_size=[64, 96])
    return {
        # name: (head class, config, batch maker, samples, training?)
        "mlm-train": ("PerceiverForMaskedLM", dict(mlm, max_position_embeddings=2048), ("masked", 4, 2048), 4, True),
        "mlm-infer-full": ("PerceiverForMaskedLM", full, ("ids", 1, 2048), 1, False),
        "img-train": ("PerceiverForImageClassificationFourier", img, ("pixels", 32), 32, True),
        "flow-infer": ("PerceiverForOpticalFlow", flow, ("flow", 1), 1, False),
    }


def make_batch(torch, spec, device):
    kind = spec[0]
    if kind in ("masked", "ids"):
        _, b, n = spec
        ids = torch.randint(6, 262, (b, n))
        if kind == "ids":
            return {"inputs": ids.to(device)}
        chosen = torch.rand(b, n) < 0.15
        return {"inputs": torch.where(chosen, torch.full_like(ids, 3), ids).to(device),
                "labels": torch.where(chosen, ids, torch.full_like(ids, -100)).to(device)}
    if kind == "pixels":
        b = spec[1]
        return {"inputs": torch.randn(b, 3, 32, 32, device=device), "labels": torch.randint(0, 10, (b,), device=device)}
    return {"inputs": torch.randn(spec[1], 2, 27, 64, 96, device=device)}


class _StandIns(types.ModuleType):
    """A module of stand-ins: attributes set here, and a placeholder class for any other name (those
    are used only by code the bench never runs: ONNX export configs, tokenizer types)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = type(name, (), {})
        setattr(self, name, placeholder)
        return placeholder


def _framework_stand_ins(torch):
    nn, F = torch.nn, torch.nn.functional

    class ModelOutput:
        def to_tuple(self):
            values = (getattr(self, f.name) for f in dataclasses.fields(self))
            return tuple(v for v in values if v is not None)

        def __getitem__(self, key):
            return getattr(self, key) if isinstance(key, str) else self.to_tuple()[key]

    @dataclasses.dataclass
    class BaseModelOutputWithCrossAttentions(ModelOutput):
        last_hidden_state: object = None
        hidden_states: object = None
        attentions: object = None
        cross_attentions: object = None

    class PretrainedConfig:
        def __init__(self, **kwargs):
            self.output_attentions = kwargs.pop("output_attentions", False)
            self.output_hidden_states = kwargs.pop("output_hidden_states", False)
            self.return_dict = kwargs.pop("return_dict", True)
            self.torchscript = kwargs.pop("torchscript", False)
            self.chunk_size_feed_forward = kwargs.pop("chunk_size_feed_forward", 0)
            self.problem_type = kwargs.pop("problem_type", None)
            self.num_labels = kwargs.pop("num_labels", 2)
            self.pruned_heads = {}
            for key, value in kwargs.items():
                setattr(self, key, value)

        @property
        def use_return_dict(self):
            return self.return_dict and not self.torchscript

    class PreTrainedModel(nn.Module):
        config_class = None
        base_model_prefix = ""
        main_input_name = "input_ids"
        supports_gradient_checkpointing = False

        def __init__(self, config, *args, **kwargs):
            super().__init__()
            self.config = config

        def post_init(self):
            self.apply(self._init_weights)

        @property
        def dtype(self):
            return next(self.parameters()).dtype

        def invert_attention_mask(self, mask):
            extended = mask[:, None, None, :] if mask.dim() == 2 else mask[:, None, :, :]
            extended = extended.to(dtype=self.dtype)
            return (1.0 - extended) * torch.finfo(self.dtype).min

        def get_head_mask(self, head_mask, num_hidden_layers, is_attention_chunked=False):
            if head_mask is not None:
                raise NotImplementedError("head_mask is not supported by the bench's stand-ins")
            return [None] * num_hidden_layers

    def apply_chunking_to_forward(forward_fn, chunk_size, chunk_dim, *inputs):
        if chunk_size > 0:
            chunks = zip(*(t.chunk(t.shape[chunk_dim] // chunk_size, dim=chunk_dim) for t in inputs))
            return torch.cat([forward_fn(*c) for c in chunks], dim=chunk_dim)
        return forward_fn(*inputs)

    def unsupported(*args, **kwargs):
        raise NotImplementedError("head pruning is not supported by the bench's stand-ins")

    def decorator_factory(*args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]  # used bare, as @auto_docstring
        return lambda fn: fn

    gelu_tanh = lambda x: F.gelu(x, approximate="tanh")  # noqa: E731
    return {
        "transformers.utils": dict(
            ModelOutput=ModelOutput, logging=types.SimpleNamespace(get_logger=logging.getLogger), torch_int=int,
            add_start_docstrings=decorator_factory, add_start_docstrings_to_model_forward=decorator_factory,
            replace_return_docstrings=decorator_factory, add_code_sample_docstrings=decorator_factory,
            auto_docstring=decorator_factory, can_return_tuple=decorator_factory),
        "transformers.modeling_outputs": dict(BaseModelOutputWithCrossAttentions=BaseModelOutputWithCrossAttentions),
        "transformers.modeling_utils": dict(PreTrainedModel=PreTrainedModel),
        "transformers.configuration_utils": dict(PretrainedConfig=PretrainedConfig),
        "transformers.pytorch_utils": dict(
            apply_chunking_to_forward=apply_chunking_to_forward, meshgrid=torch.meshgrid,
            find_pruneable_heads_and_indices=unsupported, prune_linear_layer=unsupported),
        "transformers.activations": dict(ACT2FN={
            "gelu": F.gelu, "relu": F.relu, "silu": F.silu, "swish": F.silu, "tanh": torch.tanh,
            "sigmoid": torch.sigmoid, "gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh}),
        "transformers.initialization": vars(nn.init),
    }


class _PerceiverFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports transformers.models.perceiver.{modeling,configuration}_perceiver from files, and every
    other transformers module as stand-ins."""

    def __init__(self, perceiver_dir, stand_ins):
        self.perceiver_dir = perceiver_dir
        self.stand_ins = stand_ins

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "transformers" and not fullname.startswith("transformers."):
            return None
        leaf = fullname.rsplit(".", 1)[-1]
        if fullname.startswith("transformers.models.perceiver.") and leaf.endswith("_perceiver"):
            return importlib.util.spec_from_file_location(fullname, self.perceiver_dir / f"{leaf}.py")
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        module = _StandIns(spec.name)
        module.__dict__.update(self.stand_ins.get(spec.name, {}))
        return module

    def exec_module(self, module):
        pass


def import_perceiver(source, torch):
    """transformers itself, or, given a source tree, its Perceiver files with stand-ins (see above).
    Returns (namespace with PerceiverConfig and the model classes, version string)."""
    if source is None:
        import transformers
        return transformers, transformers.__version__
    root = pathlib.Path(source)
    for package in (root / "transformers", root / "src" / "transformers", root):
        if (package / "models" / "perceiver" / "modeling_perceiver.py").is_file():
            break
    else:
        raise SystemExit(f"{source}: no transformers/models/perceiver/modeling_perceiver.py below it")
    sys.meta_path.insert(0, _PerceiverFinder(package / "models" / "perceiver", _framework_stand_ins(torch)))
    module = importlib.import_module("transformers.models.perceiver.modeling_perceiver")
    found = re.search(r'__version__ = "([^"]+)"', (package / "__init__.py").read_text()) \
        if (package / "__init__.py").is_file() else None
    return module, (found.group(1) if found else "unknown") + " (source, stand-ins)"


def feed_layer_norms_fp32(torch):
    F = torch.nn.functional

    def forward(self, x):
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)

    torch.nn.LayerNorm.forward = forward


def time_workload(torch, config_class, cls, workload, name, version, args, device):
    """One workload's result line: the median of args.iters timed steps after args.warmup."""
    _, config_kwargs, spec, samples, training = workload
    torch.manual_seed(0)
    model = cls(config_class(**config_kwargs)).to(device)
    batch = make_batch(torch, spec, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if training else None
    model.train(training)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step():
        if training:
            optimizer.zero_grad()
            with autocast:
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
        else:
            with torch.inference_mode(), autocast:
                model(**batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"workload": name, "precision": args.precision, "impl": "hf-transformers",
            "transformers": version, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "seconds_per_iter": seconds, "samples_per_s": samples / seconds,
            # the process's peak (run one workload per process for each one's own)
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda where there is one)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    parser.add_argument("--transformers-src", help="a transformers source tree to run without the package")
    args = parser.parse_args()
    try:
        import torch
        transformers, version = import_perceiver(args.transformers_src, torch)
    except ImportError as e:
        print(json.dumps({"error": f"no reference: {e}"}))
        return 1
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu" and args.precision == "bf16":
        feed_layer_norms_fp32(torch)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    table = workloads()
    names = args.only or list(table)
    for name in names:
        if name not in table:
            print(json.dumps({"workload": name, "error": f"not in the reference (it has {', '.join(table)})"}))
            continue
        cls_name = table[name][0]
        cls = getattr(transformers, cls_name, None)
        if cls is None:
            print(json.dumps({"workload": name, "error": f"transformers {version} has no {cls_name}"}))
            continue
        print(json.dumps(time_workload(torch, transformers.PerceiverConfig, cls, table[name], name, version, args,
                                       device)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
