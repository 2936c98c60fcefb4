"""Times PyTorch's attention backends on the seed's rows, in the same run as ours.

Usage (on the GPU machine, after `deno run ... bench/seed_table.ts --json ours.json`):
    python3 bench/peers/sdpa_peers.py --ours ours.json --out-md table.md --out-svg chart.svg

Every timing is the median of triton.testing.do_bench (CUDA events, L2 flushed between
runs), bf16. bias is a dense [1, H, N, N] bf16 tensor without grad; for causal + bias the
SDPA paths get the bias with a -inf upper triangle (the same math as our causal + bias).
"""

import argparse
import json
import math

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench

SEQLENS = (2048, 4096, 8192)
BATCH, HEADS, HEAD_DIM = 1, 12, 128
BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
MODES = ("fwd", "bwd", "fwd+bwd")


def row_label(n, p, bias, causal):
    return f"({BATCH},{HEADS},{n},{HEAD_DIM}) p={p:.1f} bias={int(bias)} causal={int(causal)}"


def flops(n, causal, mode):
    forward = 4.0 * BATCH * HEADS * n * n * HEAD_DIM / (2.0 if causal else 1.0)
    return {"fwd": forward, "bwd": 2.5 * forward, "fwd+bwd": 3.5 * forward}[mode]


def time_sdpa(backend, n, p, bias, causal):
    torch.manual_seed(0)
    shape = (BATCH, HEADS, n, HEAD_DIM)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    mask = None
    if bias:
        mask = torch.randn((1, HEADS, n, n), device="cuda", dtype=torch.bfloat16)
        if causal:
            mask = mask.masked_fill(torch.ones(n, n, device="cuda", dtype=torch.bool).triu(1),
                                    float("-inf"))
    is_causal = causal and not bias

    def forward():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p,
                                              is_causal=is_causal)

    results = {}
    try:
        context = sdpa_kernel([BACKENDS[backend]])
        context.__enter__()
        out = forward()
        grad = torch.randn_like(out)
        results["fwd"] = do_bench(forward, warmup=50, rep=300, return_mode="median") * 1e3

        def backward():
            q.grad = k.grad = v.grad = None
            out.backward(grad, retain_graph=True)

        results["bwd"] = do_bench(backward, warmup=50, rep=300, return_mode="median") * 1e3

        def both():
            q.grad = k.grad = v.grad = None
            forward().backward(grad)

        results["fwd+bwd"] = do_bench(both, warmup=50, rep=300, return_mode="median") * 1e3
    except RuntimeError as error:  # backend refuses this row (e.g. flash with a bias)
        results = {"error": str(error).splitlines()[0][:120]}
    finally:
        context.__exit__(None, None, None)
    del q, k, v, mask
    torch.cuda.empty_cache()
    return results


def svg_chart(table, path):
    """Bar chart of ours / best peer per row and mode (higher is better for us)."""
    rows = [(label, mode, ratio) for (label, mode), ratio in table.items() if ratio is not None]
    width, bar, gap = 900, 9, 3
    height = 40 + len(rows) * (bar + gap)
    scale = 300.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="monospace" font-size="9">',
             '<text x="10" y="15" font-size="12">speedup of flashattn over the best PyTorch '
             'backend (best peer time / ours); line = 1.0</text>']
    x0 = 330
    for index, (label, mode, ratio) in enumerate(rows):
        y = 30 + index * (bar + gap)
        color = {"fwd": "#4472c4", "bwd": "#ed7d31", "fwd+bwd": "#70ad47"}[mode]
        parts.append(f'<text x="5" y="{y + bar - 1}">{mode:8s} {label}</text>')
        parts.append(f'<rect x="{x0}" y="{y}" width="{min(ratio, 1.9) * scale:.1f}" '
                     f'height="{bar}" fill="{color}"/>')
        parts.append(f'<text x="{x0 + min(ratio, 1.9) * scale + 3:.1f}" y="{y + bar - 1}">'
                     f'{ratio:.2f}</text>')
    parts.append(f'<line x1="{x0 + scale}" y1="25" x2="{x0 + scale}" y2="{height}" '
                 'stroke="black" stroke-dasharray="3,2"/>')
    parts.append("</svg>")
    with open(path, "w") as handle:
        handle.write("\n".join(parts))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ours", help="JSON written by bench/seed_table.ts --json")
    parser.add_argument("--out-md", default="peers.md")
    parser.add_argument("--out-svg", default="peers.svg")
    parser.add_argument("--seqlens", default=",".join(map(str, SEQLENS)))
    args = parser.parse_args()
    ours = json.load(open(args.ours)) if args.ours else {}
    seqlens = [int(s) for s in args.seqlens.split(",")]

    device = torch.cuda.get_device_name()
    lines = [f"# flashattn vs PyTorch attention backends: {device}, torch {torch.__version__}, "
             f"cuDNN {torch.backends.cudnn.version()}", "",
             "Median µs, bf16, same run. ratio = ours / best peer time (< 1 means we are "
             "faster). bias = dense [1,H,N,N] bf16 without grad.", ""]
    ratios = {}
    measured = {}
    for n in seqlens:
        for bias in (False, True):
            for p in (0.0, 0.1):
                for causal in (False, True):
                    label = row_label(n, p, bias, causal)
                    measured[label] = {name: time_sdpa(name, n, p, bias, causal)
                                       for name in BACKENDS}
                    print(label, json.dumps(measured[label]), flush=True)
    for mode in MODES:
        lines += [f"## {mode}", "",
                  "| row | ours | flash | efficient | cudnn | best peer | ours TFLOP/s | ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, peers in measured.items():
            n = int(label.split(",")[2])
            causal = label.endswith("causal=1")
            times = {name: result.get(mode) for name, result in peers.items()}
            valid = {name: t for name, t in times.items() if t is not None}
            best = min(valid, key=valid.get) if valid else None
            mine = ours.get(label, {}).get(mode)
            ratio = mine / valid[best] if (mine and best) else None
            ratios[(label, mode)] = (valid[best] / mine) if (mine and best) else None
            tflops = flops(n, causal, mode) / (mine * 1e-6) / 1e12 if mine else None
            cell = lambda t: f"{t:.0f}" if t is not None else ""
            lines.append(f"| {label} | {cell(mine)} | {cell(times['flash'])} | "
                         f"{cell(times['efficient'])} | {cell(times['cudnn'])} | {best or ''} | "
                         f"{cell(tflops)} | {f'{ratio:.2f}' if ratio else ''} |")
        mode_ratios = sorted(r for (l, m), r in ratios.items() if m == mode and r)
        if mode_ratios:
            inverse = sorted(1 / r for r in mode_ratios)
            lines += ["", f"{mode}: ours / best peer: worst {inverse[-1]:.2f}, median "
                          f"{inverse[len(inverse) // 2]:.2f}, best {inverse[0]:.2f}"]
        lines.append("")
    with open(args.out_md, "w") as handle:
        handle.write("\n".join(lines))
    svg_chart(ratios, args.out_svg)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
