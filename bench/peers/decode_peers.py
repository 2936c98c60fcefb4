r"""Times PyTorch's peers on the KV-cache decode rows of bench/decode_rows.json, in the same run.

Usage (on the GPU machine, after our TS decode bench wrote ours.json):
    PYTHONUNBUFFERED=1 python3 bench/peers/decode_peers.py --ours ours.json \
        --out-json decode_peers.json --out-md decode.md [--rows LABEL,GROUP,...] \
        [--flex spread|all|none] [--flex-timeout 180] [--list]
    python3 bench/peers/decode_peers.py --table-only decode_peers.json --ours ours.json \
        --out-md decode.md   # re-renders the table from an earlier run, no GPU needed

Rows (bench/decode_rows.json, the one list our TS bench reads too): sequence b has L_b cached
keys and Snew new query rows; the peers get K/V of Sk_b = L_b + Snew keys (the new keys
already appended), causal bottom-right aligned (query row s sees keys j <= L_b + s).
kv_bytes = sum_b 2 * L_b * Hkv * D * 2 (the cached K and V, bf16).

Peers, bf16, q [B, Hq, Snew, D], k/v [B, Hkv, Sk, D], every timing the median of
triton.testing.do_bench (CUDA events, L2 flushed between runs):
- cudnn, flash, efficient: SDPA with that backend alone (sdpa_kernel([...])), GQA through
  enable_gqa=True; where a backend refuses it, K/V repeated to Hq heads outside the timed
  region ("repeat", marked r: it then reads Hq/Hkv times the bytes).
  Snew > 1 (SDPA's is_causal is top-left aligned, so it is never used with Sq != Sk):
    cudnn: an explicit bottom-right mask, additive bf16 (0 / -inf, last dim padded to 16
      elements so SDPA need not copy it) and boolean, both tried, the faster kept (m);
    flash: torch.ops.aten._scaled_dot_product_flash_attention(is_causal=True), which is
      bottom-right for Sq != Sk (what torch.nn.attention.bias.causal_lower_right dispatches
      to; SDPA's own flash path refuses is_causal with Sq != Sk and any attn_mask) (c);
    efficient: torch.ops.aten._efficient_attention_forward with custom_mask_type 2
      (bottom-right, again what causal_lower_right uses) (c), and SDPA with the mask (m).
  Spread lengths: the batch padded to max Sk_b rounded up to 128 keys (padded K/V hold random
  values) with a key-padding mask (p: the peer does the padded work, see kv_bytes_given) for
  cudnn and efficient; varlen on packed K/V (v: no padded work) for flash
  (aten._flash_attention_forward with cu_seqlens) and efficient (cu_seqlens_q/k).
- flex: torch.compile(flex_attention, fullgraph=True), enable_gqa, a block mask for the
  padding / bottom-right causal (none for uniform Snew = 1 rows), on the spread rows only by
  default (--flex all: every row). Each flex row runs in a child process (--flex-worker)
  killed after --flex-timeout seconds, so a slow compile or a crash costs one cell only.
- read: a Triton read-only kernel (each program sums a contiguous chunk, writes one int32)
  over a buffer of exactly kv_bytes, best of a few chunk / block / warp configs; and once
  the card's best read bandwidth over a 2 GiB buffer.
Every peer output is checked against an fp32 reference (per sequence, the true Sk_b keys):
a relative RMS error above 3% blanks the cell ("wrong result"), so a peer with the wrong
causal alignment or padding never counts. A refusal, error or OOM blanks that cell, is
logged, and the script goes on. `--list` needs no torch: it prints the rows, lengths, bytes.

--ours (written by our TS bench; any key but "us" may be missing, "error" blanks the row):
    {"rows": {"<label>": {"us": number, "kv_bytes": number, "paged16_us"?: number,
              "paged64_us"?, "paged256_us"?, "append_us"?, "copy_us"?, "error"?: string}}}
--out-json (schema "decode_peers/1"; times in µs, null where a peer did not run):
    {"schema", "device", "torch", "cudnn", "triton", "timing": {"warmup_ms", "rep_ms", ...},
     "read_peak": {"bytes", "us", "gbps", "config"},
     "rows": {"<label>": {"row": <the decode_rows.json row>, "cache_lens": [L_b],
              "seqlen_k": [L_b + Snew], "kv_bytes", "read": {"us", "gbps", "config"},
              "peers": {"cudnn" | "flash" | "efficient" | "flex": {"us", "how",
                        "kv_bytes_given", "rel_err", "attempts": [{"how", "us"?,
                        "rel_err"?, "kv_bytes_given"?, "error"?}]}},
              "best_peer": {"peer", "how", "us"} | null}}}
    how: gqa (enable_gqa, K/V at Hkv heads) | mha | repeat (K/V at Hq heads), then
    +padded, +mask-add | +mask-add-contiguous | +mask-bool, +varlen, +aten-causal-br,
    +blockmask. kv_bytes_given = bytes of the K/V tensors that variant was handed.

Table (--ours): target met = ours <= 0.9 x best peer, or, where 0.9 x best peer would be
faster than the read kernel, ours <= 1.05 x read kernel. 3.6 TB/s column: ours kv_bytes /
ours us >= 3.6e12 B/s, for rows whose kv_bytes >= 128 MiB. Paged: pagedN_us / us <= 1.10.
Append: append_us / (us + copy_us) <= 1.05.
"""

import argparse
import contextlib
import gc
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import traceback
import warnings

# One error summary and one dynamo setup for every peer script (flex_peers.py imports no
# torch at module level, so --list still runs without it).
from flex_peers import configure_dynamo, describe

try:  # the read kernel; --list and --table-only run without triton
    import triton
    import triton.language as tl
except ImportError:
    triton = tl = None

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS_PATH = os.path.normpath(os.path.join(HERE, "..", "decode_rows.json"))
DEVICE = "cuda"
ELEMENT_BYTES = 2  # bf16
PEAK_BYTES = 2 << 30  # the card's read bandwidth, once
BIG_CACHE = 128 << 20  # rows whose kv_bytes >= this get the 3.6 TB/s check
TARGET_TBPS = 3.6
PEER_RATIO, READ_SLACK = 0.9, 1.05
PAGED_LIMIT, APPEND_LIMIT = 1.10, 1.05
PAGED_KEYS = ("paged16_us", "paged64_us", "paged256_us")
TOLERANCE = 0.03  # relative RMS error per sequence against the fp32 reference
PEERS = ("cudnn", "flash", "efficient", "flex")
FLEX_PREFIX = "FLEXRESULT "
# Read-kernel configs (BLOCK int32 per load step, ITERS steps per program, num_warps).
READ_CONFIGS = ((4096, 4, 8), (4096, 16, 8), (4096, 64, 8), (2048, 8, 4), (2048, 32, 4),
                (8192, 8, 16))


# --- rows (pure Python: shared with --list, --table-only and the TS bench's rule) ----------

def spread_lengths(batch, lo, hi, seed):
    """The README rule: L_b = floor(lo * (hi/lo) ** (i / (B-1)) + 0.5), i = (b + seed) % B."""
    lengths = []
    for b in range(batch):
        i = (b + seed) % batch
        t = i / (batch - 1) if batch > 1 else 0.0
        base = lo * (hi / lo) ** t
        if abs(base - math.floor(base) - 0.5) < 1e-6:  # a last-ulp pow difference could flip it
            raise ValueError(f"spread length {base!r} too close to a rounding boundary")
        lengths.append(min(hi, max(lo, math.floor(base + 0.5))))
    return lengths


def cache_lengths(row):
    lens = row["cache_lens"]
    if isinstance(lens, int):
        return [lens] * row["batch"]
    lo, hi = lens["spread"]
    return spread_lengths(row["batch"], lo, hi, lens.get("seed", 0))


def is_spread(row):
    return not isinstance(row["cache_lens"], int)


def key_lengths(row):
    return [n + row["seqlen_new"] for n in cache_lengths(row)]


def kv_bytes(row):
    return sum(2 * n * row["heads_kv"] * row["head_dim"] * ELEMENT_BYTES
               for n in cache_lengths(row))


def load_rows(path):
    with open(path) as handle:
        rows = json.load(handle)["rows"]
    for row in rows:
        assert "," not in row["label"], row["label"]
        assert row["heads_q"] % row["heads_kv"] == 0, row["label"]
        assert row["causal"] or row["seqlen_new"] == 1, row["label"]
        cache_lengths(row)
    return rows


def select_rows(rows, spec):
    if not spec:
        return rows
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    known = {r["label"] for r in rows} | {r["group"] for r in rows}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise SystemExit(f"unknown rows or groups: {unknown}; known: {sorted(known)}")
    return [r for r in rows if r["label"] in wanted or r["group"] in wanted]


def list_rows(rows):
    for r in rows:
        lens = cache_lengths(r)
        shown = str(lens[0]) if not is_spread(r) else ",".join(map(str, lens))
        print(f"{r['label']}\tB={r['batch']} Hq={r['heads_q']} Hkv={r['heads_kv']} "
              f"D={r['head_dim']} Snew={r['seqlen_new']} causal={int(r['causal'])} "
              f"group={r['group']}\tL={shown} (sum {sum(lens)})\tkv_bytes={kv_bytes(r)} "
              f"({kv_bytes(r) / 2**20:.1f} MiB)")


# --- the read kernel ----------------------------------------------------------------------

if triton is not None:
    @triton.jit
    def _read_sum_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr, ITERS: tl.constexpr):
        pid = tl.program_id(0).to(tl.int64)
        base = pid * (BLOCK * ITERS)
        acc = tl.zeros([BLOCK], dtype=tl.int32)
        for i in range(ITERS):
            offsets = base + i * BLOCK + tl.arange(0, BLOCK)
            acc += tl.load(x_ptr + offsets, mask=offsets < n, other=0)
        tl.store(out_ptr + pid, tl.sum(acc, axis=0))


# --- the torch side -------------------------------------------------------------------------

class Variant:
    """One way to run a peer: run() is what gets timed; to_bhsd maps its output to
    [B, Hq, Snew, D] for the check; context wraps both (the SDPA backend choice)."""

    def __init__(self, how, run, kv_given, context=None, to_bhsd=None):
        self.how, self.run, self.kv_given = how, run, kv_given
        self.context = context or contextlib.nullcontext
        self.to_bhsd = to_bhsd or (lambda out: out)


class Bench:
    def __init__(self, warmup_ms, rep_ms):
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from triton.testing import do_bench

        self.torch, self.F, self.sdpa_kernel, self.do_bench = torch, F, sdpa_kernel, do_bench
        self.warmup_ms, self.rep_ms = warmup_ms, rep_ms
        self.backends = {"cudnn": SDPBackend.CUDNN_ATTENTION,
                         "flash": SDPBackend.FLASH_ATTENTION,
                         "efficient": SDPBackend.EFFICIENT_ATTENTION}

    def bench(self, fn, rep_ms=None):
        return self.do_bench(fn, warmup=self.warmup_ms, rep=rep_ms or self.rep_ms,
                             return_mode="median") * 1e3

    # inputs ------------------------------------------------------------------------------

    def inputs(self, row):
        torch = self.torch
        B, Hq, Hkv, D, snew = (row["batch"], row["heads_q"], row["heads_kv"], row["head_dim"],
                               row["seqlen_new"])
        sk = key_lengths(row)
        kpad = max(sk)
        if is_spread(row):
            kpad = -(-kpad // 128) * 128
        generator = torch.Generator(device=DEVICE).manual_seed(0)
        make = lambda *shape: torch.randn(shape, generator=generator, device=DEVICE,
                                          dtype=torch.bfloat16)
        inp = dict(B=B, Hq=Hq, Hkv=Hkv, D=D, snew=snew, sk=sk, kpad=kpad, G=Hq // Hkv,
                   causal=row["causal"] and snew > 1, padded=is_spread(row))
        inp["q"], inp["k"], inp["v"] = make(B, Hq, snew, D), make(B, Hkv, kpad, D), \
            make(B, Hkv, kpad, D)
        inp["sk_t"] = torch.tensor(sk, device=DEVICE, dtype=torch.int32)
        return inp

    def repeated(self, inp):
        if "k_rep" not in inp:
            inp["k_rep"] = inp["k"].repeat_interleave(inp["G"], dim=1)
            inp["v_rep"] = inp["v"].repeat_interleave(inp["G"], dim=1)
        return inp["k_rep"], inp["v_rep"]

    def bool_mask(self, inp):
        """[Bm, 1, Snew, kpad], True = attend; Bm = 1 when every sequence is alike."""
        torch = self.torch
        if "mask_bool" not in inp:
            sk = inp["sk_t"] if inp["padded"] else inp["sk_t"][:1]
            rows = torch.arange(inp["snew"], device=DEVICE, dtype=torch.int32)
            if inp["causal"]:
                limit = sk[:, None] - inp["snew"] + rows[None, :] + 1
            else:
                limit = sk[:, None].expand(-1, inp["snew"])
            cols = torch.arange(inp["kpad"], device=DEVICE, dtype=torch.int32)
            inp["mask_bool"] = (cols[None, None, :] < limit[:, :, None]).unsqueeze(1)
        return inp["mask_bool"]

    def additive_mask(self, inp):
        """The bool mask as bf16 0 / -inf, in storage whose rows are padded to 16 elements."""
        torch = self.torch
        if "mask_add" not in inp:
            mask = self.bool_mask(inp)
            width = -(-inp["kpad"] // 16) * 16
            storage = torch.full(mask.shape[:-1] + (width,), float("-inf"), device=DEVICE,
                                 dtype=torch.bfloat16)
            view = storage[..., :inp["kpad"]]
            view.masked_fill_(mask, 0.0)
            inp["mask_add"] = view
        return inp["mask_add"]

    def packed(self, inp, repeat):
        """Varlen form: q [B*Snew, Hq, D], k/v [sum Sk_b, H, D], cu_seqlens int32."""
        torch = self.torch
        key = "packed_rep" if repeat else "packed"
        if key not in inp:
            k, v = self.repeated(inp) if repeat else (inp["k"], inp["v"])
            B, snew, sk = inp["B"], inp["snew"], inp["sk"]
            pack = lambda t: torch.cat([t[b, :, :sk[b]].transpose(0, 1) for b in range(B)],
                                       0).contiguous()
            q = inp["q"].transpose(1, 2).reshape(B * snew, inp["Hq"], inp["D"]).contiguous()
            cu_q = torch.arange(0, B + 1, device=DEVICE, dtype=torch.int32) * snew
            cu_k = torch.tensor([0] + list(itertools.accumulate(sk)), device=DEVICE,
                                dtype=torch.int32)
            inp[key] = (q, pack(k), pack(v), cu_q, cu_k)
        return inp[key]

    def reference(self, inp):
        """fp32 [B, Hq, Snew, D], per sequence over its true Sk_b keys."""
        torch = self.torch
        out = torch.empty(inp["q"].shape, device=DEVICE, dtype=torch.float32)
        scale = 1.0 / math.sqrt(inp["D"])
        snew = inp["snew"]
        for b, n in enumerate(inp["sk"]):
            k = inp["k"][b, :, :n].float().repeat_interleave(inp["G"], dim=0)
            v = inp["v"][b, :, :n].float().repeat_interleave(inp["G"], dim=0)
            s = torch.matmul(inp["q"][b].float(), k.transpose(-1, -2)) * scale
            if inp["causal"]:
                rows = torch.arange(snew, device=DEVICE)[:, None]
                cols = torch.arange(n, device=DEVICE)[None, :]
                s.masked_fill_(cols > rows + (n - snew), float("-inf"))
            out[b] = torch.matmul(torch.softmax(s, dim=-1), v)
            del k, v, s
        return out

    def rel_err(self, out, ref):
        diff = (out.float() - ref).flatten(1).norm(dim=1)
        return float((diff / ref.flatten(1).norm(dim=1).clamp_min(1e-30)).max())

    # variants ----------------------------------------------------------------------------

    def kv_given(self, inp, repeat=False, packed=False):
        heads = inp["Hq"] if repeat else inp["Hkv"]
        keys = sum(inp["sk"]) if packed else inp["B"] * inp["kpad"]
        return 2 * keys * heads * inp["D"] * ELEMENT_BYTES

    def sdpa_variant(self, backend, inp, repeat, mask=None, tag=""):
        F = self.F
        q = inp["q"]
        k, v = self.repeated(inp) if repeat else (inp["k"], inp["v"])
        gqa = inp["G"] > 1 and not repeat
        how = ("repeat" if repeat else ("gqa" if inp["G"] > 1 else "mha")) + tag
        context = lambda: self.sdpa_kernel([self.backends[backend]])
        run = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return Variant(how, run, self.kv_given(inp, repeat), context)

    def head_chain(self, inp, build):
        """Builders, native GQA first, K/V repeated as the fallback (none for MHA rows); built
        lazily, so the repeated K/V exist only where the native form failed."""
        return [lambda: build(False)] + ([lambda: build(True)] if inp["G"] > 1 else [])

    def options(self, backend, inp):
        """Lists of fallback chains: within a chain the first that runs counts; the backend's
        cell is the fastest chain."""
        torch = self.torch
        padded, causal = inp["padded"], inp["causal"]
        pad_tag = "+padded" if padded else ""
        if not padded and not causal:
            return [self.head_chain(inp, lambda r: self.sdpa_variant(backend, inp, r))]
        masked = lambda: [
            self.head_chain(inp, lambda r: self.sdpa_variant(
                backend, inp, r, self.additive_mask(inp), pad_tag + "+mask-add")),
            self.head_chain(inp, lambda r: self.sdpa_variant(
                backend, inp, r, self.additive_mask(inp).contiguous(),
                pad_tag + "+mask-add-contiguous")),
            self.head_chain(inp, lambda r: self.sdpa_variant(
                backend, inp, r, self.bool_mask(inp), pad_tag + "+mask-bool"))]
        B, Hq, snew, D = inp["B"], inp["Hq"], inp["snew"], inp["D"]
        if backend == "cudnn":
            return masked()
        if backend == "flash":
            if padded:
                def varlen(repeat):
                    q, k, v, cu_q, cu_k = self.packed(inp, repeat)
                    max_k = max(inp["sk"])
                    run = lambda: torch.ops.aten._flash_attention_forward(
                        q, k, v, cu_q, cu_k, snew, max_k, 0.0, causal, False)[0]
                    to_bhsd = lambda out: out.view(B, snew, Hq, D).transpose(1, 2)
                    return Variant(("repeat" if repeat else "gqa") + "+varlen", run,
                                   self.kv_given(inp, repeat, packed=True),
                                   to_bhsd=to_bhsd)
                return [self.head_chain(inp, varlen)]

            def causal_op(repeat):
                q = inp["q"]
                k, v = self.repeated(inp) if repeat else (inp["k"], inp["v"])
                run = lambda: torch.ops.aten._scaled_dot_product_flash_attention(
                    q, k, v, 0.0, True, False)[0]
                return Variant(("repeat" if repeat else ("gqa" if inp["G"] > 1 else "mha"))
                               + "+aten-causal-br", run, self.kv_given(inp, repeat))
            return [self.head_chain(inp, causal_op)]
        # efficient: no GQA in the kernel, so the aten ops get repeated K/V.
        if padded:
            def varlen_eff(repeat):
                q, k, v, cu_q, cu_k = self.packed(inp, repeat)
                q, k, v = q[None], k[None], v[None]
                max_k = max(inp["sk"])
                run = lambda: torch.ops.aten._efficient_attention_forward(
                    q, k, v, bias=None, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
                    max_seqlen_q=snew, max_seqlen_k=max_k, dropout_p=0.0,
                    custom_mask_type=2 if causal else 0, compute_log_sumexp=False)[0]
                to_bhsd = lambda out: out.view(B, snew, Hq, D).transpose(1, 2)
                return Variant(("repeat" if repeat else "gqa") + "+varlen", run,
                               self.kv_given(inp, repeat, packed=True), to_bhsd=to_bhsd)
            return masked() + [self.head_chain(inp, varlen_eff)]

        def causal_eff(repeat):
            q = inp["q"].transpose(1, 2)
            k, v = self.repeated(inp) if repeat else (inp["k"], inp["v"])
            k, v = k.transpose(1, 2), v.transpose(1, 2)
            run = lambda: torch.ops.aten._efficient_attention_forward(
                q, k, v, bias=None, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None,
                max_seqlen_k=None, dropout_p=0.0, custom_mask_type=2,
                compute_log_sumexp=False)[0]
            return Variant(("repeat" if repeat else ("gqa" if inp["G"] > 1 else "mha"))
                           + "+aten-causal-br", run, self.kv_given(inp, repeat),
                           to_bhsd=lambda out: out.transpose(1, 2))
        return [self.head_chain(inp, causal_eff)] + masked()

    def flex_variant(self, inp):
        torch = self.torch
        import torch._dynamo
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        configure_dynamo(torch)
        flex = torch.compile(flex_attention, dynamic=False, fullgraph=True)
        q, k, v = inp["q"], inp["k"], inp["v"]
        sk_t, snew = inp["sk_t"], inp["snew"]
        block_mask, how = None, "gqa" if inp["G"] > 1 else "mha"
        if inp["causal"]:
            mask_mod = lambda b, h, q_idx, kv_idx: kv_idx <= q_idx + (sk_t[b] - snew)
        elif inp["padded"]:
            mask_mod = lambda b, h, q_idx, kv_idx: kv_idx < sk_t[b]
        else:
            mask_mod = None
        if mask_mod is not None:
            block_mask = create_block_mask(mask_mod, inp["B"], None, snew, inp["kpad"],
                                           device=DEVICE)
            how += ("+padded" if inp["padded"] else "") + "+blockmask"
        gqa = inp["G"] > 1
        run = lambda: flex(q, k, v, block_mask=block_mask, enable_gqa=gqa)
        return Variant(how, run, self.kv_given(inp))

    # measuring ---------------------------------------------------------------------------

    def measure(self, variant, ref):
        torch = self.torch
        result = {"how": variant.how, "kv_bytes_given": variant.kv_given}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with variant.context():
                    out = variant.run()  # compiles (flex) outside the timing
                    torch.cuda.synchronize()
                    err = self.rel_err(variant.to_bhsd(out), ref)
                    result["rel_err"] = err if math.isfinite(err) else None  # valid JSON
                    del out
                    if not err <= TOLERANCE:  # NaN counts as wrong
                        result["error"] = f"wrong result: relative RMS error {err:.3g}"
                        return result
                    result["us"] = self.bench(variant.run)
            except Exception as error:  # refusal, OOM, compile error: this cell only
                reason = describe(error)
                notes = [str(w.message).splitlines()[0][:160] for w in caught
                         if "kernel" in str(w.message).lower()
                         or "attention" in str(w.message).lower()]
                result["error"] = reason + (f" [{'; '.join(notes[:3])}]" if notes else "")
        return result

    def run_peer(self, backend, inp, ref):
        """{"us", "how", "kv_bytes_given", "rel_err", "attempts": [...]}."""
        attempts, best = [], None
        try:
            chains = self.options(backend, inp) if backend != "flex" else \
                [[lambda: self.flex_variant(inp)]]
        except Exception as error:
            traceback.print_exc()
            return {"us": None, "how": None, "attempts": [{"error": describe(error)}]}
        for chain in chains:
            for build in chain:
                try:
                    variant = build()
                except Exception as error:  # e.g. OOM repeating K/V, no flex module
                    attempts.append({"error": "building the inputs: " + describe(error)})
                    print(f"    {backend}: {attempts[-1]['error']}", flush=True)
                    continue
                result = self.measure(variant, ref)
                attempts.append(result)
                print(f"    {backend} {variant.how}: "
                      f"{result.get('us', result.get('error'))}", flush=True)
                if "us" in result:
                    if best is None or result["us"] < best["us"]:
                        best = result
                    break
        out = dict(best) if best else {"us": None, "how": None}
        out["attempts"] = attempts
        return out

    def read_time(self, nbytes, select_rep_ms=30):
        """(us, config) of the fastest read-kernel config over nbytes."""
        torch = self.torch
        n = nbytes // 4
        buffer = torch.ones(n, device=DEVICE, dtype=torch.int32)
        results = []
        def launcher(block, iters, warps):
            grid = (triton.cdiv(n, block * iters),)
            sink = torch.empty(grid[0], device=DEVICE, dtype=torch.int32)
            return lambda: _read_sum_kernel[grid](buffer, sink, n, BLOCK=block, ITERS=iters,
                                                  num_warps=warps)

        for block, iters, warps in READ_CONFIGS:
            run = launcher(block, iters, warps)
            try:
                run()
                torch.cuda.synchronize()
                results.append((self.bench(run, rep_ms=select_rep_ms), (block, iters, warps),
                                run))
            except Exception as error:
                print(f"    read config {(block, iters, warps)}: {describe(error)}", flush=True)
        if not results:
            return None, None
        _, config, run = min(results, key=lambda r: r[0])
        us = self.bench(run)
        del buffer
        torch.cuda.empty_cache()
        return us, f"BLOCK={config[0]} ITERS={config[1]} num_warps={config[2]}"

    def free(self):
        gc.collect()
        self.torch.cuda.empty_cache()


def flex_worker(args, row):
    """Child process: one flex row, its result on a FLEXRESULT line."""
    bench = Bench(args.warmup, args.rep)
    try:
        inp = bench.inputs(row)
        ref = bench.reference(inp)
        result = bench.run_peer("flex", inp, ref)
    except Exception as error:
        traceback.print_exc()
        result = {"us": None, "how": None, "attempts": [{"error": describe(error)}]}
    print(FLEX_PREFIX + json.dumps(result), flush=True)


def run_flex_child(args, row):
    command = [sys.executable, os.path.abspath(__file__), "--flex-worker", row["label"],
               "--rows-file", args.rows_file, "--warmup", str(args.warmup),
               "--rep", str(args.rep)]
    env = dict(os.environ, TORCHINDUCTOR_COMPILE_THREADS="1", PYTHONUNBUFFERED="1")
    # Its own process group, so a timeout also ends whatever the child started.
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=args.flex_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        print(f"    flex child killed after {args.flex_timeout} s", flush=True)
        return {"us": None, "how": None,
                "attempts": [{"error": f"flex child killed after {args.flex_timeout} s"}]}
    for line in reversed(stdout.splitlines()):
        if line.startswith(FLEX_PREFIX):
            sys.stdout.write("".join(f"{l}\n" for l in stdout.splitlines()
                                     if l.startswith("    flex")))
            return json.loads(line[len(FLEX_PREFIX):])
    tail = (stderr or stdout).strip().splitlines()[-5:]
    print("    flex child failed:\n      " + "\n      ".join(tail), flush=True)
    return {"us": None, "how": None,
            "attempts": [{"error": f"flex child exit {child.returncode}: "
                                   f"{tail[-1][:200] if tail else ''}"}]}


def measure_rows(args, rows):
    bench = Bench(args.warmup, args.rep)
    torch = bench.torch
    peers = [p for p in args.peers.split(",") if p]
    report = {"schema": "decode_peers/1", "device": torch.cuda.get_device_name(),
              "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
              "triton": triton.__version__,
              "timing": {"warmup_ms": args.warmup, "rep_ms": args.rep, "stat": "median",
                         "l2_flush": True, "tool": "triton.testing.do_bench"},
              "rows": {}}
    print(f"{report['device']}, torch {report['torch']}, cuDNN {report['cudnn']}, "
          f"triton {report['triton']}", flush=True)
    us, config = bench.read_time(PEAK_BYTES)
    report["read_peak"] = {"bytes": PEAK_BYTES, "us": us, "config": config,
                           "gbps": PEAK_BYTES / (us * 1e3) if us else None}
    print(f"read peak: {report['read_peak']}", flush=True)
    for index, row in enumerate(rows):
        label = row["label"]
        print(f"[{index + 1}/{len(rows)}] {label}", flush=True)
        entry = {"row": row, "cache_lens": cache_lengths(row), "seqlen_k": key_lengths(row),
                 "kv_bytes": kv_bytes(row), "peers": {}}
        us, config = bench.read_time(entry["kv_bytes"])
        entry["read"] = {"us": us, "config": config,
                         "gbps": entry["kv_bytes"] / (us * 1e3) if us else None}
        print(f"    read: {entry['read']}", flush=True)
        inp = ref = None
        try:
            inp = bench.inputs(row)
            ref = bench.reference(inp)
            for peer in peers:
                if peer != "flex":
                    entry["peers"][peer] = bench.run_peer(peer, inp, ref)
        except Exception as error:  # e.g. OOM building the inputs
            traceback.print_exc()
            for peer in peers:
                entry["peers"].setdefault(peer, {"us": None, "how": None,
                                                 "attempts": [{"error": describe(error)}]})
        inp = ref = None
        bench.free()
        if "flex" in peers:
            if args.flex == "all" or (args.flex == "spread" and is_spread(row)):
                entry["peers"]["flex"] = run_flex_child(args, row)
            else:
                entry["peers"]["flex"] = {"us": None, "how": None, "attempts": [
                    {"error": f"not run (--flex {args.flex})"}]}
        valid = {p: r for p, r in entry["peers"].items() if r.get("us") is not None}
        best = min(valid, key=lambda p: valid[p]["us"]) if valid else None
        entry["best_peer"] = ({"peer": best, "how": valid[best]["how"], "us": valid[best]["us"]}
                              if best else None)
        print(f"    best peer: {entry['best_peer']}", flush=True)
        report["rows"][label] = entry
    return report


# --- the table (pure Python) ---------------------------------------------------------------

MARKS = (("repeat", "r"), ("mask", "m"), ("padded", "p"), ("varlen", "v"), ("aten-causal", "c"),
         ("blockmask", "b"))


def marks(how):
    return "".join(mark for token, mark in MARKS if how and token in how)


def fmt(value, digits=1):
    return f"{value:.{digits}f}" if value is not None else ""


def target_met(ours, best, read):
    """ours <= 0.9 x best peer, or (0.9 x best peer faster than the read kernel) ours within
    5% of the read kernel."""
    if ours is None or (best is None and read is None):
        return ""
    if best is not None and ours <= PEER_RATIO * best:
        return "yes"
    if read is not None and (best is None or PEER_RATIO * best < read):
        return "yes (read)" if ours <= READ_SLACK * read else "NO (read)"
    return "NO"


def table(report, ours):
    ours_rows = ours.get("rows", {})
    peak = report.get("read_peak") or {}
    lines = [f"# KV-cache decode: flashattn vs PyTorch peers: {report.get('device')}, "
             f"torch {report.get('torch')}, cuDNN {report.get('cudnn')}, "
             f"triton {report.get('triton')}", "",
             "Median µs, bf16, same run (peers: triton do_bench median, L2 flushed). "
             f"Card read peak (Triton read kernel, 2 GiB): {fmt(peak.get('gbps'), 0)} GB/s. "
             "read kernel = the same read-only kernel over exactly the row's kv_bytes "
             "(sum_b 2 L_b Hkv D 2). Peer marks: r = K/V repeated to Hq heads outside the "
             "timing, m = explicit mask, p = padded batch, v = varlen (packed K/V), "
             "c = aten op with bottom-right is_causal, b = flex block mask.", "",
             f"target: ours <= {PEER_RATIO} x best peer, or where {PEER_RATIO} x best peer < "
             f"read kernel, ours <= {READ_SLACK} x read kernel. {TARGET_TBPS} TB/s: rows with "
             "kv_bytes >= 128 MiB.", "",
             "| row | ours us | cuDNN | flash | efficient | flex | best peer | ours/best | "
             "read-kernel us | ours / read-kernel | ours KV TB/s | target met? | "
             f">= {TARGET_TBPS} TB/s (cache >= 128 MiB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for label, entry in report["rows"].items():
        mine = ours_rows.get(label, {})
        us = mine.get("us")
        nbytes = entry["kv_bytes"]
        if mine.get("kv_bytes") is not None and mine["kv_bytes"] != nbytes:
            notes.append(f"- {label}: ours kv_bytes {mine['kv_bytes']} != {nbytes} (rows rule)")
        if mine.get("error"):
            notes.append(f"- ours {label}: {mine['error']}")
        cells = []
        for peer in PEERS:
            result = entry["peers"].get(peer) or {}
            t = result.get("us")
            cells.append(f"{fmt(t)} {marks(result.get('how'))}".strip() if t is not None else "")
            if t is None and result.get("attempts"):
                errors = [a.get("error", "") for a in result["attempts"]
                          if not a.get("error", "").startswith("not run")]
                if any(errors):
                    notes.append(f"- {peer} {label}: {' / '.join(e for e in errors if e)}")
        best = entry.get("best_peer")
        best_us = best["us"] if best else None
        read_us = (entry.get("read") or {}).get("us")
        tbps = nbytes / (us * 1e6) if us else None
        big = ("yes" if tbps >= TARGET_TBPS else "NO") if (us and nbytes >= BIG_CACHE) else \
            ("-" if nbytes < BIG_CACHE else "")
        lines.append(
            f"| {label} | {fmt(us)} | {' | '.join(cells)} | "
            f"{(best['peer'] + ' ' + fmt(best_us)) if best else ''} | "
            f"{fmt(us / best_us, 2) if (us and best_us) else ''} | {fmt(read_us)} | "
            f"{fmt(us / read_us, 2) if (us and read_us) else ''} | {fmt(tbps, 2)} | "
            f"{target_met(us, best_us, read_us)} | {big} |")
    paged = [(label, ours_rows[label]) for label in report["rows"]
             if label in ours_rows and any(k in ours_rows[label] for k in
                                           PAGED_KEYS + ("append_us",))]
    if paged:
        lines += ["", f"Paged cache (pagedN_us / dense us, target <= {PAGED_LIMIT:.2f}) and "
                      f"append (append_us / (us + copy_us), target <= {APPEND_LIMIT:.2f}):", "",
                  "| row | dense us | paged16 us | /dense | paged64 us | /dense | paged256 us | "
                  "/dense | paged met? | append us | copy us | append/(us+copy) | append met? |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for label, mine in paged:
            us = mine.get("us")
            cells, verdicts = [], []
            for key in PAGED_KEYS:
                t = mine.get(key)
                ratio = t / us if (t and us) else None
                cells += [fmt(t), fmt(ratio, 3)]
                if ratio is not None:
                    verdicts.append(ratio <= PAGED_LIMIT)
            paged_met = ("yes" if all(verdicts) else "NO") if verdicts else ""
            append, copy = mine.get("append_us"), mine.get("copy_us")
            ratio = append / (us + copy) if (append and us and copy is not None) else None
            append_met = ("yes" if ratio <= APPEND_LIMIT else "NO") if ratio is not None else ""
            lines.append(f"| {label} | {fmt(us)} | {' | '.join(cells)} | {paged_met} | "
                         f"{fmt(append)} | {fmt(copy)} | {fmt(ratio, 3)} | {append_met} |")
    lines += ["", "Every peer variant tried (µs, or why not; the cell above is the fastest):", ""]
    for label, entry in report["rows"].items():
        parts = []
        for peer in PEERS:
            attempts = (entry["peers"].get(peer) or {}).get("attempts") or []
            shown = [f"{a.get('how') or '?'} {fmt(a['us'])}" if a.get("us") is not None else
                     f"{a.get('how') or '?'} ({a.get('error', '')[:90]})" for a in attempts
                     if not a.get("error", "").startswith("not run")]
            if shown:
                parts.append(f"{peer}: " + "; ".join(shown))
        lines.append(f"- {label}: " + " | ".join(parts))
    missing = [label for label in ours_rows if label not in report["rows"]]
    if missing:
        notes.append(f"- rows in ours.json without a peer row: {missing}")
    if notes:
        lines += ["", "Notes and blank cells:", ""] + notes
    return lines + [""]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-file", default=ROWS_PATH)
    parser.add_argument("--rows", default="", help="comma-separated labels or groups")
    parser.add_argument("--ours", help="JSON written by our TS decode bench")
    parser.add_argument("--out-json", default="decode_peers.json")
    parser.add_argument("--out-md", default="decode.md")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--flex", default="spread", choices=("spread", "all", "none"))
    parser.add_argument("--flex-timeout", type=int, default=180, help="seconds per flex row")
    parser.add_argument("--warmup", type=int, default=25, help="do_bench warmup, ms")
    parser.add_argument("--rep", type=int, default=100, help="do_bench rep, ms")
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    parser.add_argument("--table-only", metavar="PEERS_JSON",
                        help="render the table from an earlier --out-json, no GPU")
    parser.add_argument("--flex-worker", metavar="LABEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rows_file = os.path.abspath(args.rows_file)
    unknown = [p for p in args.peers.split(",") if p and p not in PEERS]
    if unknown:
        parser.error(f"unknown peers: {unknown}")
    rows = load_rows(args.rows_file)
    if args.flex_worker:
        flex_worker(args, next(r for r in rows if r["label"] == args.flex_worker))
        return
    rows = select_rows(rows, args.rows)
    if args.list:
        list_rows(rows)
        return
    ours = {}
    if args.ours:
        try:
            with open(args.ours) as handle:
                ours = json.load(handle)
        except (OSError, ValueError) as error:  # our run failed: the peers still count
            print(f"--ours {args.ours}: {describe(error)}; ours left blank", flush=True)
    if args.table_only:
        with open(args.table_only) as handle:
            report = json.load(handle)
    else:
        if args.flex == "none":
            args.peers = ",".join(p for p in args.peers.split(",") if p != "flex")
        report = measure_rows(args, rows)
        with open(args.out_json, "w") as handle:
            json.dump(report, handle, indent=1)
    lines = table(report, ours)
    with open(args.out_md, "w") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
