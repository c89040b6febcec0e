#!/usr/bin/env python3
"""The `perceiver bench` workloads run through Hugging Face's Python Perceiver, the reference a user
would otherwise pick, timed the same way (median of the timed iterations, device synchronised).

    python3 bench/hf_reference.py [--device cuda] [--precision fp32|bf16] [--only NAME ...] [--iters N]

Prints one JSON object per line with the fields `perceiver bench --json` uses for the same names.
The model configurations mirror trainers/bench.cpp's workloads; keep them in step.
"""
import argparse
import json
import statistics
import sys
import time


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    try:
        import torch
        import transformers
    except ImportError as e:
        print(json.dumps({"error": f"no reference: {e}"}))
        return 1
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    table = workloads()
    names = args.only or list(table)
    for name in names:
        cls_name, config_kwargs, spec, samples, training = table[name]
        cls = getattr(transformers, cls_name, None)
        if cls is None:
            print(json.dumps({"workload": name, "error": f"transformers {transformers.__version__} has no {cls_name}"}))
            continue
        torch.manual_seed(0)
        model = cls(transformers.PerceiverConfig(**config_kwargs)).to(device)
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
        print(json.dumps({"workload": name, "precision": args.precision, "impl": "hf-transformers",
                          "transformers": transformers.__version__, "torch": torch.__version__,
                          "num_parameters": sum(p.numel() for p in model.parameters()),
                          "seconds_per_iter": seconds, "samples_per_s": samples / seconds}), flush=True)
        del model, optimizer
    return 0


if __name__ == "__main__":
    sys.exit(main())
