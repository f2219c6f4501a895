"""PyTorch (transformers) CLIP ViT-B/32 fp32 throughput baseline; prints one JSON object on stdout for the Rust bench."""
# Usage: HF_HUB_OFFLINE=1 /tmp/clip-ref/bin/python benches/torch_clip_bench.py [--threads N] [--seconds S]
# (venv: tests/fixtures/setup_oracle.sh). Random weights: throughput does not depend on the values.
import argparse
import json
import os
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--seconds", type=float, default=4.0, help="target timed seconds per row (default 4)")
    ap.add_argument("--image-batches", default="1,8,32", help="comma separated image batch sizes")
    ap.add_argument("--text-batches", default="8", help="comma separated text batch sizes")
    ap.add_argument("--train-batches", default="", help="comma separated batch sizes for the patch-training step")
    ap.add_argument("--device", default="cpu", help="torch device: cpu (the Rust bench's column) or cuda (gpu-check)")
    ap.add_argument("--serve", action="store_true",
                    help="build the model once, then time one cell per stdin line ('image B', 'text B' or 'train B') "
                         "and answer each with a JSON line {\"per_s\": ...} (the Rust bench's --interleave)")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import CLIPConfig, CLIPModel

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = CLIPConfig(
        vision_config=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                           patch_size=32, image_size=224, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                           projection_dim=512),
        text_config=dict(hidden_size=512, num_hidden_layers=12, num_attention_heads=8, intermediate_size=2048,
                         vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                         projection_dim=512, bos_token_id=49406, eos_token_id=49407),
        projection_dim=512,
    )
    dev = torch.device(args.device)
    model = CLIPModel(cfg).float().eval().to(dev)
    # GPU work is queued: wait for it before reading the clock. fp32 matmuls stay fp32 (no TF32), as in advclip.
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def timed(fn, seconds):
        """Warm-up, then repeat fn until `seconds` have passed (at least 3 runs); returns seconds per call."""
        fn()
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        one = time.perf_counter() - t0
        reps = max(3, int(round(seconds / max(one, 1e-6))))
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        return (time.perf_counter() - t0) / reps

    def image_cell(b):
        with torch.inference_mode():
            px = torch.randn(b, 3, 224, 224, device=dev)
            return b / timed(lambda: model.get_image_features(pixel_values=px), args.seconds)

    def text_cell(b):
        with torch.inference_mode():
            # 77-token prompts: SOT, 75 random ordinary tokens, EOT (no padding: full-length attention)
            ids = torch.randint(1, 49406, (b, 77), device=dev)
            ids[:, 0], ids[:, -1] = 49406, 49407
            return b / timed(lambda: model.get_text_features(input_ids=ids), args.seconds)

    # The targeted patch-training step advclip runs: paste a 38 px patch (3 %) at AdvCLIP's place into 224 px images,
    # normalise, image encoder, zero-shot cross-entropy toward a label, backward to the patch only, Adam, clamp.
    for p in model.parameters():
        p.requires_grad_(False)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1).to(dev)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1).to(dev)
    labels = torch.nn.functional.normalize(torch.randn(10, 512, device=dev), dim=-1)

    def train_cell(b):
        images = torch.rand(b, 3, 224, 224, device=dev)
        patch = torch.rand(3, 38, 38, device=dev, requires_grad=True)
        opt = torch.optim.Adam([patch], lr=0.05, betas=(0.5, 0.999))
        mask = torch.zeros(1, 1, 224, 224, device=dev)
        mask[..., 172:210, 172:210] = 1

        def step():
            padded = torch.nn.functional.pad(patch, (172, 14, 172, 14)).unsqueeze(0)
            x = mask * padded + (1 - mask) * images
            features = model.get_image_features(pixel_values=(x - mean) / std)
            # transformers 5 returns an output object, 4.x the projected tensor itself
            emb = torch.nn.functional.normalize(getattr(features, "pooler_output", features), dim=-1)
            loss = torch.nn.functional.cross_entropy(100.0 * emb @ labels.T, torch.full((b,), 3, device=dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                patch.clamp_(0, 1)

        return b / timed(step, args.seconds)

    cells = {"image": image_cell, "text": text_cell, "train": train_cell}
    if args.serve:
        print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                          "cpu_capability": torch.backends.cpu.get_cpu_capability()}), flush=True)
        for line in sys.stdin:
            kind, batch = line.split()
            print(json.dumps({"per_s": round(cells[kind](int(batch)), 3)}), flush=True)
        return

    image_per_s, text_per_s, train_per_s = {}, {}, {}
    for b in [int(x) for x in args.image_batches.split(",") if x]:
        image_per_s[str(b)] = round(image_cell(b), 3)
        print(f"image batch {b}: {image_per_s[str(b)]:.2f} images/s", file=sys.stderr)
    for b in [int(x) for x in args.text_batches.split(",") if x]:
        text_per_s[str(b)] = round(text_cell(b), 3)
        print(f"text batch {b}: {text_per_s[str(b)]:.2f} texts/s", file=sys.stderr)
    for b in [int(x) for x in args.train_batches.split(",") if x]:
        train_per_s[str(b)] = round(train_cell(b), 3)
        print(f"train batch {b}: {train_per_s[str(b)]:.2f} images/s, {b / train_per_s[str(b)]:.2f} s/step",
              file=sys.stderr)

    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
                      "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                      "image_per_s": image_per_s, "text_per_s": text_per_s, "train_per_s": train_per_s}))


if __name__ == "__main__":
    main()
