"""Times PyTorch's peers on the score-feature rows of bench/feature_rows.ts, in the same run.

Usage (on the GPU machine, after `deno run ... bench/feature_rows.ts --json ours.json`):
    PYTHONUNBUFFERED=1 python3 bench/peers/flex_peers.py --ours ours.json --out-md table.md \
        [--rows window,softcap,sinks,alibi] [--peers flex,cudnn,flash] [--list]

Peers, bf16, median of triton.testing.do_bench (CUDA events, L2 flushed between runs):
- flex: torch.compile(flex_attention), window and causal as a block mask, softcap and ALiBi
  as score_mod. Sinks have no FlexAttention form; they are emulated by one extra key whose
  score_mod returns the sink logit and whose value is zero (same softmax), without dsinks.
- cudnn, flash: SDPA with that backend forced, only where SDPA has the feature natively
  (plain causal / non-causal rows); the others are left blank with the reason.
A failure (refusal, compile error, OOM) blanks that cell, is logged with its traceback, and
the script goes on. `--list` needs no torch: it prints the rows and visible fractions.
"""

import argparse
import gc
import json
import traceback

BATCH, HEADS, HEAD_DIM = 1, 16, 128
GROUPS = ("window", "softcap", "sinks", "alibi")
MODES = ("fwd", "bwd")
PEERS = ("flex", "cudnn", "flash")
DEVICE = "cuda"  # a module constant so that a CPU smoke test can swap it

CAUSAL_16K = "(1,16,16384,128) causal"
CAUSAL_8K = "(1,16,8192,128) causal"
FULL_8K = "(1,16,8192,128) non-causal"


def row(label, groups, seqlen, causal, window=None, softcap=None, sinks=False, alibi=False,
        reference=None, targets=None):
    return dict(label=label, groups=groups, seqlen=seqlen, causal=causal, window=window,
                softcap=softcap, sinks=sinks, alibi=alibi, reference=reference,
                targets=targets or {})


# The same rows, labels and targets as bench/feature_rows.ts (references first).
ROWS = [
    row(CAUSAL_16K, ("window",), 16384, True),
    row("(1,16,16384,128) window=[1024,0]", ("window",), 16384, False, window=(1024, 0),
        reference=CAUSAL_16K, targets={"fwd": 1.15, "bwd": 1.15}),
    row("(1,16,16384,128) window=[1024,1024]", ("window",), 16384, False, window=(1024, 1024),
        reference=CAUSAL_16K, targets={"fwd": 1.15, "bwd": 1.15}),
    row(CAUSAL_8K, ("softcap", "sinks", "alibi"), 8192, True),
    row(FULL_8K, ("softcap", "sinks"), 8192, False),
    row("(1,16,8192,128) causal softcap=30", ("softcap",), 8192, True, softcap=30.0,
        reference=CAUSAL_8K, targets={"fwd": 1.10}),
    row("(1,16,8192,128) non-causal softcap=30", ("softcap",), 8192, False, softcap=30.0,
        reference=FULL_8K, targets={"fwd": 1.10}),
    row("(1,16,8192,128) causal sinks", ("sinks",), 8192, True, sinks=True,
        reference=CAUSAL_8K, targets={"fwd": 1.02}),
    row("(1,16,8192,128) non-causal sinks", ("sinks",), 8192, False, sinks=True,
        reference=FULL_8K, targets={"fwd": 1.02}),
    row("(1,16,8192,128) causal alibi", ("alibi",), 8192, True, alibi=True,
        reference=CAUSAL_8K),
]
BY_LABEL = {r["label"]: r for r in ROWS}


def effective_window(r):
    """[left, right] with -1 unbounded, causal folded in as right = 0."""
    left, right = r["window"] or (-1, -1)
    if r["causal"]:
        right = 0 if right < 0 else min(right, 0)
    return left, right


def visible_fraction(sq, sk, window):
    """Visible (i, j) pairs / (Sq * Sk), counted row by row."""
    left, right = window
    pairs = 0
    for i in range(sq):
        diagonal = i + sk - sq
        first = 0 if left < 0 else max(0, diagonal - left)
        last = sk - 1 if right < 0 else min(sk - 1, diagonal + right)
        pairs += max(0, last - first + 1)
    return pairs / (sq * sk)


def fraction_of(r):
    return visible_fraction(r["seqlen"], r["seqlen"], effective_window(r))


def sink_values(heads):
    return [(h % 5) * 0.5 - 1 for h in range(heads)]  # as feature_rows.ts's sinkValues


def alibi_slopes(heads):
    return [2 ** (-8 * (h + 1) / heads) for h in range(heads)]


def sdpa_refusal(r):
    """Why SDPA cannot run this row natively, or None."""
    if r["window"]:
        return "SDPA has no sliding window (only as a dense mask)"
    if r["softcap"]:
        return "SDPA has no softcap"
    if r["sinks"]:
        return "SDPA has no attention sinks"
    if r["alibi"]:
        return "SDPA has ALiBi only as an explicit dense float bias, not natively"
    return None


def describe(error):
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0][:160] if lines else ''}"
    if error.__cause__ is not None:  # dynamo wraps the real error
        text += f" (from {describe(error.__cause__)})"
    return text


def configure_dynamo(torch):
    # Each row compiles flex_attention anew (its shape, mask and score_mod are guarded on);
    # past the default limit of 8 dynamo silently runs the unfused eager path, so raise the
    # limit and make hitting it an error. Names differ across torch versions.
    config = torch._dynamo.config
    for name, value in (("recompile_limit", 64), ("cache_size_limit", 64),
                        ("accumulated_recompile_limit", 1024),
                        ("accumulated_cache_size_limit", 1024),
                        ("fail_on_recompile_limit_hit", True),
                        ("fail_on_cache_limit_hit", True)):
        if hasattr(config, name):
            setattr(config, name, value)


class Peers:
    """The torch side, imported only when timing (so --list runs without torch)."""

    def __init__(self):
        import torch
        import torch._dynamo
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        from triton.testing import do_bench

        configure_dynamo(torch)
        self.torch, self.F, self.sdpa_kernel = torch, F, sdpa_kernel
        self.do_bench, self.create_block_mask = do_bench, create_block_mask
        self.backends = {"cudnn": SDPBackend.CUDNN_ATTENTION,
                         "flash": SDPBackend.FLASH_ATTENTION}
        # fullgraph: a graph break would also mean the eager (unfused) flex path.
        self.flex = torch.compile(flex_attention, dynamic=False, fullgraph=True)

    def bench(self, fn):
        return self.do_bench(fn, warmup=50, rep=300, return_mode="median") * 1e3

    def inputs(self, r, extra_key=False):
        torch = self.torch
        torch.manual_seed(0)
        n = r["seqlen"]
        kv_len = n + 1 if extra_key else n
        make = lambda length: torch.randn((BATCH, HEADS, length, HEAD_DIM), device=DEVICE,
                                          dtype=torch.bfloat16)
        q, k, v = make(n), make(kv_len), make(kv_len)
        v[:, :, n:] = 0  # the sink's key carries no value
        return tuple(t.requires_grad_() for t in (q, k, v))

    def flex_setup(self, r):
        torch = self.torch
        n = r["seqlen"]
        q, k, v = self.inputs(r, extra_key=r["sinks"])
        offset = 0  # Sk - Sq of the row (square rows)
        left, right = effective_window(r)

        def visible(q_idx, kv_idx):
            diagonal = q_idx + offset
            ok = kv_idx <= diagonal + right if right >= 0 else kv_idx >= 0
            if left >= 0:
                ok = ok & (kv_idx >= diagonal - left)
            return ok

        block_mask = None
        if left >= 0 or right >= 0:
            if r["sinks"]:
                mask_mod = lambda b, h, q_idx, kv_idx: (kv_idx == n) | visible(q_idx, kv_idx)
            else:
                mask_mod = lambda b, h, q_idx, kv_idx: visible(q_idx, kv_idx)
            block_mask = self.create_block_mask(mask_mod, None, None, n, k.shape[2],
                                                device=DEVICE)
        score_mod = None
        if r["softcap"]:
            cap = r["softcap"]
            score_mod = lambda score, b, h, q_idx, kv_idx: cap * torch.tanh(score / cap)
        elif r["alibi"]:
            slopes = torch.tensor(alibi_slopes(HEADS), device=DEVICE, dtype=torch.float32)
            # Subtracts slope * |distance| (scores after scaling, as ours).
            score_mod = lambda score, b, h, q_idx, kv_idx: (
                score - slopes[h] * torch.abs(q_idx + offset - kv_idx))
        elif r["sinks"]:
            sinks = torch.tensor(sink_values(HEADS), device=DEVICE, dtype=torch.float32)
            score_mod = lambda score, b, h, q_idx, kv_idx: torch.where(
                kv_idx == n, sinks[h], score)
        forward = lambda: self.flex(q, k, v, score_mod=score_mod, block_mask=block_mask)
        return forward, (q, k, v)

    def sdpa_setup(self, r, backend):
        q, k, v = self.inputs(r)

        def forward():
            with self.sdpa_kernel([self.backends[backend]]):
                return self.F.scaled_dot_product_attention(q, k, v, is_causal=r["causal"])

        return forward, (q, k, v)

    def time(self, setup):
        """{"fwd": µs, "bwd": µs}; a failing mode gives "error" instead of raising."""
        torch = self.torch
        results = {}
        try:
            forward, leaves = setup()
            out = forward()  # compiles (flex) outside the timing
            torch.cuda.synchronize()
            results["fwd"] = self.bench(forward)
        except Exception as error:
            traceback.print_exc()
            return {"error": "fwd: " + describe(error)}
        try:
            grad = torch.randn_like(out)
            out.backward(grad, retain_graph=True)  # compiles the backward outside the timing
            torch.cuda.synchronize()

            def backward():
                for t in leaves:
                    t.grad = None
                out.backward(grad, retain_graph=True)

            results["bwd"] = self.bench(backward)
        except Exception as error:
            traceback.print_exc()
            results["error"] = "bwd: " + describe(error)
        return results

    def run(self, r, peer):
        if peer == "flex":
            self.torch._dynamo.reset()  # fresh compile cache per row
            result = self.time(lambda: self.flex_setup(r))
        else:
            result = self.time(lambda: self.sdpa_setup(r, peer))
        gc.collect()
        self.torch.cuda.empty_cache()
        return result


def derived(r, mode, times):
    """(ratio, reference µs): time / reference, the window's reference scaled by fraction."""
    if r["reference"] is None:
        return None
    reference = BY_LABEL[r["reference"]]
    mine, base = times.get(r["label"], {}).get(mode), times.get(reference["label"], {}).get(mode)
    if mine is None or base is None:
        return None
    scale = fraction_of(r) / fraction_of(reference) if r["window"] else 1.0
    return mine / (scale * base), scale * base


def target_text(r, mode):
    limit = r["targets"].get(mode)
    if limit is None:
        return ""
    if r["window"]:
        return f"<= {limit:.2f} x scaled causal"
    return f"<= +{(limit - 1) * 100:.0f}%"


def table(rows, ours, measured, header):
    cell = lambda t: f"{t:.0f}" if t is not None else ""
    ours_times = {label: {m: t for m, t in v.items() if m in MODES} for label, v in ours.items()}
    peer_times = {p: {label: measured[label].get(p, {}) for label in measured} for p in PEERS}
    lines = header + [
        "| row | mode | ours | flex | cudnn | flash | ratio (ours/best peer) | target | met |",
        "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for mode in MODES:
            mine = ours_times.get(r["label"], {}).get(mode)
            peers = {p: measured.get(r["label"], {}).get(p, {}).get(mode) for p in PEERS}
            valid = {p: t for p, t in peers.items() if t is not None}
            best = min(valid.values()) if valid else None
            ratio = f"{mine / best:.2f}" if (mine and best) else ""
            d = derived(r, mode, ours_times)
            limit = r["targets"].get(mode)
            met = ("yes" if d[0] <= limit else "no") if (limit and d) else ""
            lines.append(f"| {r['label']} | {mode} | {cell(mine)} | {cell(peers['flex'])} | "
                         f"{cell(peers['cudnn'])} | {cell(peers['flash'])} | {ratio} | "
                         f"{target_text(r, mode)} | {met} |")
    lines += ["", "## Derived ratios", "",
              "window: reference = visible fraction / causal visible fraction x the causal row; "
              "others: reference = the same row without the feature.", "",
              "| row | mode | reference row | ours | ours reference | ours / reference | target "
              "| met | flex / its reference |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["reference"] is None:
            continue
        for mode in MODES:
            d = derived(r, mode, ours_times)
            flex = derived(r, mode, peer_times["flex"])
            limit = r["targets"].get(mode)
            met = ("yes" if d[0] <= limit else "no") if (limit and d) else ""
            mine = ours_times.get(r["label"], {}).get(mode)
            lines.append(f"| {r['label']} | {mode} | {r['reference']} | {cell(mine)} | "
                         f"{cell(d[1]) if d else ''} | {f'{d[0]:.3f}' if d else ''} | "
                         f"{target_text(r, mode)} | {met} | {f'{flex[0]:.3f}' if flex else ''} |")
    lines.append("")
    for r in rows:
        if r["window"] or (r["label"] == CAUSAL_16K):
            lines.append(f"- visible fraction {r['label']}: {fraction_of(r):.6f}")
    notes = [f"- ours {label}: {v['error']}" for label, v in ours.items() if "error" in v]
    for label, peers in measured.items():
        notes += [f"- {p} {label}: {v['error']}" for p, v in peers.items() if "error" in v]
    if notes:
        lines += ["", "Blank cells:", ""] + notes
    return lines + [""]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours", help="JSON written by bench/feature_rows.ts --json")
    parser.add_argument("--out-md", default="features.md")
    parser.add_argument("--rows", default=",".join(GROUPS))
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    args = parser.parse_args()
    groups = args.rows.split(",")
    unknown = [g for g in groups if g not in GROUPS] + \
        [p for p in args.peers.split(",") if p not in PEERS]
    if unknown:
        parser.error(f"unknown rows or peers: {unknown}")
    rows = [r for r in ROWS if any(g in groups for g in r["groups"])]
    if args.list:
        for r in rows:
            print(f"{r['label']}\t{fraction_of(r):.6f}")
        return
    ours = {}
    if args.ours:
        try:
            with open(args.ours) as handle:
                ours = json.load(handle)
        except (OSError, ValueError) as error:  # our run failed: the peers still count
            print(f"--ours {args.ours}: {describe(error)}; ours left blank", flush=True)

    peers = Peers()
    torch = peers.torch
    measured = {}
    for index, r in enumerate(rows):
        measured[r["label"]] = {}
        for peer in args.peers.split(","):
            reason = sdpa_refusal(r) if peer != "flex" else None
            if reason:
                measured[r["label"]][peer] = {"error": f"not accepted: {reason}"}
            else:
                print(f"[{index + 1}/{len(rows)}] {r['label']} {peer} ...", flush=True)
                measured[r["label"]][peer] = peers.run(r, peer)
            print(f"{r['label']} {peer}: {json.dumps(measured[r['label']][peer])}", flush=True)

    header = [f"# Score features: flashattn vs PyTorch peers: {torch.cuda.get_device_name()}, "
              f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}", "",
              "Median µs, bf16, same run (ours: CUDA events, median of the iterations after "
              "warm-up, L2 flushed; peers: triton do_bench median). ratio = ours / best peer "
              "(< 1: we are faster). flex sinks = one extra zero-value key scored by the sink "
              "logit (its backward computes no dsinks).", ""]
    lines = table(rows, ours, measured, header)
    with open(args.out_md, "w") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
