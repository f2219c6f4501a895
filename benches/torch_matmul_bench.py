"""PyTorch's F.linear over a ViT's block weights (ViT-B/32's 72 by default), at the rows of an image batch; one JSON object on stdout."""
# Usage: /tmp/clip-ref/bin/python benches/torch_matmul_bench.py [--threads N] [--seconds S] [--batches 8,32]
# (venv: tests/fixtures/setup_oracle.sh). The Rust bench `cargo bench --bench matmul` runs it for its PyTorch rows.
import argparse
import json
import os
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per batch (default 3)")
    ap.add_argument("--batches", default="8,32", help="comma separated image batch sizes")
    ap.add_argument("--width", type=int, default=768, help="the blocks' width (ViT-B/32: 768)")
    ap.add_argument("--mlp", type=int, default=3072, help="the MLP's inner width (ViT-B/32: 3072)")
    ap.add_argument("--layers", type=int, default=12, help="blocks (ViT-B/32: 12)")
    ap.add_argument("--tokens", type=int, default=50, help="rows an image (ViT-B/32: 50)")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    d, m, layers, tokens = args.width, args.mlp, args.layers, args.tokens
    shapes = [(d, d), (d, d), (d, d), (d, d), (m, d), (d, m)]  # (out, in), as nn.Linear holds them
    generator = torch.Generator().manual_seed(0)
    weights = [(torch.randn(o, i, generator=generator) * 0.02, torch.zeros(o))
               for _ in range(layers) for (o, i) in shapes]
    blas = "MKL" if torch.backends.mkl.is_available() else "no MKL"
    rates = {}
    with torch.inference_mode():
        for batch in [int(b) for b in args.batches.split(",") if b]:
            rows = batch * tokens
            inputs = {i: torch.randn(rows, i, generator=generator) for i in (d, m)}

            def one_pass():
                for w, b in weights:
                    F.linear(inputs[w.shape[1]], w, b)

            one_pass()
            start, runs = time.perf_counter(), 0
            while runs < 2 or time.perf_counter() - start < args.seconds:
                one_pass()
                runs += 1
            flops = sum(2.0 * rows * w.shape[0] * w.shape[1] for w, _ in weights)
            rates[str(batch)] = flops * runs / (time.perf_counter() - start) / 1e9
    print(json.dumps({
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": blas,
        "threads": args.threads,
        "gflops": rates,
    }))


if __name__ == "__main__":
    main()
