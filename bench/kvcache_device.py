"""KV-cache kernels on the GPU machine, driven from Python over ctypes: checks against a
float32 torch reference, then our timings of bench/decode_rows.json in the schema of
bench/peers/decode_peers.py --ours.

Usage (GPU machine; FLASHATTN_LIB or build/libflashattn.so):
    python3 bench/kvcache_device.py check
    python3 bench/kvcache_device.py time --json ours_decode.json [--rows label,...]
    python3 bench/kvcache_device.py sweep [--json splits.json] [--rows ...]   # num_splits sweep

The argument structs are packed at the offsets the library reports (fa_abi_layout), so this
script follows the ABI without a copy of its layout. Timings: triton.testing.do_bench
medians (CUDA events, L2 flushed before each call), trusted lengths (max_seqlen_k given, no
host read), a caller workspace: the same path a captured decode step takes.
"""

import argparse
import ctypes
import json
import math
import os
import random
import struct
import sys

import torch
from triton.testing import do_bench

FA_FLOAT16, FA_BFLOAT16, FA_FLOAT32, FA_INT32 = 0, 1, 2, 3
FLAG_CAUSAL, FLAG_ROTARY_INTERLEAVED, FLAG_ADVANCE = 1, 4, 8
DTYPES = {torch.float16: FA_FLOAT16, torch.bfloat16: FA_BFLOAT16, torch.float32: FA_FLOAT32,
          torch.int32: FA_INT32}
HERE = os.path.dirname(os.path.abspath(__file__))


def load_library():
    path = os.environ.get("FLASHATTN_LIB") or os.path.join(HERE, "..", "build",
                                                           "libflashattn.so")
    lib = ctypes.CDLL(path)
    lib.fa_abi_layout.restype = ctypes.c_char_p
    lib.fa_last_error.restype = ctypes.c_char_p
    lib.fa_abi_version.restype = ctypes.c_uint32
    layout, current = {}, None
    for line in lib.fa_abi_layout().decode().splitlines():
        words = line.split()
        if words[0] == "struct":
            current = layout.setdefault(words[1], {"size": int(words[2]), "fields": {}})
        elif words[0] == "field":
            current["fields"][words[1]] = (int(words[2]), int(words[3]))
    return lib, layout


LIB, LAYOUT = load_library()


def check(status, what):
    if status != 0:
        raise RuntimeError(f"{what}: status {status}: {LIB.fa_last_error().decode()}")


def pack_tensor(t):
    """fa_tensor bytes of a torch tensor (or zeros for None)."""
    info = LAYOUT["fa_tensor"]
    buf = bytearray(info["size"])
    if t is None:
        return bytes(buf)
    f = info["fields"]
    struct.pack_into("<Q", buf, f["data"][0], t.data_ptr())
    struct.pack_into("<iiii", buf, f["dtype"][0], DTYPES[t.dtype],
                     t.device.index if t.is_cuda else -1, t.dim(), 0)
    shape = list(t.shape) + [0] * (4 - t.dim())
    stride = list(t.stride()) + [0] * (4 - t.dim())
    struct.pack_into("<4q", buf, f["shape"][0], *shape)
    struct.pack_into("<4q", buf, f["stride"][0], *stride)
    return bytes(buf)


class Args:
    """An ABI struct packed by field name at the library's offsets."""

    def __init__(self, name):
        self.info = LAYOUT[name]
        self.buf = ctypes.create_string_buffer(self.info["size"])
        self.set("abi_version", "<I", LIB.fa_abi_version())
        self.set("struct_size", "<I", self.info["size"])

    def set(self, field, fmt, *values):
        struct.pack_into(fmt, self.buf, self.info["fields"][field][0], *values)

    def tensor(self, field, t):
        offset = self.info["fields"][field][0]
        self.buf[offset:offset + LAYOUT["fa_tensor"]["size"]] = pack_tensor(t)


def kvcache_args(q, k_cache, v_cache, seqlens, out, lse=None, block_table=None, k_new=None,
                 v_new=None, cos=None, sin=None, sinks=None, alibi=None, scale=None,
                 softcap=0.0, window=(-1, -1), flags=0, num_splits=0, max_seqlen_k=0,
                 stream=0, workspace=None):
    a = Args("fa_kvcache_args")
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache),
                    ("cache_seqlens", seqlens), ("block_table", block_table), ("k_new", k_new),
                    ("v_new", v_new), ("rotary_cos", cos), ("rotary_sin", sin), ("out", out),
                    ("lse", lse), ("sinks", sinks), ("alibi_slopes", alibi)):
        a.tensor(name, t)
    a.set("scale", "<f", scale if scale is not None else 1.0 / math.sqrt(q.shape[-1]))
    a.set("softcap", "<f", softcap)
    a.set("window_left", "<i", window[0])
    a.set("window_right", "<i", window[1])
    a.set("flags", "<I", flags)
    a.set("num_splits", "<i", num_splits)
    a.set("max_seqlen_k", "<i", max_seqlen_k)
    a.set("stream", "<Q", stream)
    if workspace is not None:
        a.set("workspace", "<Q", workspace.data_ptr())
        a.set("workspace_bytes", "<Q", workspace.numel())
    return a


def kvcache_forward(a):
    check(LIB.fa_kvcache_forward(a.buf), "fa_kvcache_forward")


def workspace_for(a):
    size = ctypes.c_uint64(0)
    check(LIB.fa_kvcache_workspace_size(a.buf, ctypes.byref(size)), "workspace size")
    return torch.empty(max(int(size.value), 1), dtype=torch.uint8, device="cuda")


# ---- reference ------------------------------------------------------------------------

def rotate(x, cos, sin, positions, interleaved):
    """x [..., n, D] rotated at positions [n] (float32), rotary.h's pairs."""
    x = x.float().clone()
    half = cos.shape[1]
    c, s = cos[positions], sin[positions]  # [n, half]
    if interleaved:
        x1, x2 = x[..., 0:2 * half:2].clone(), x[..., 1:2 * half:2].clone()
        x[..., 0:2 * half:2], x[..., 1:2 * half:2] = x1 * c - x2 * s, x1 * s + x2 * c
    else:
        x1, x2 = x[..., :half].clone(), x[..., half:2 * half].clone()
        x[..., :half], x[..., half:2 * half] = x1 * c - x2 * s, x1 * s + x2 * c
    return x


def gather(cache, b, rows, block_table, page_size):
    """Rows [0, rows) of sequence b of a cache: [rows, Hkv, D]."""
    if block_table is None:
        return cache[b, :rows]
    r = torch.arange(rows, device=cache.device)
    pages = block_table[b, r // page_size].long()
    return cache[pages, r % page_size]


def reference(q, k, v, scale, softcap=0.0, window=(-1, -1), sinks=None, slopes=None):
    """One sequence: q [Hq, Sq, D], k/v [Hkv, Sk, D] float32 -> out, lse (float64 math)."""
    hq, sq, _ = q.shape
    hkv, sk, _ = k.shape
    q, k, v = q.double(), k.double(), v.double()
    kk = k.repeat_interleave(hq // hkv, 0)
    vv = v.repeat_interleave(hq // hkv, 0)
    s = scale * torch.einsum("hid,hjd->hij", q, kk)
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    i = torch.arange(sq, device=q.device)[:, None]
    j = torch.arange(sk, device=q.device)[None, :]
    diag = i + sk - sq
    if slopes is not None:
        s = s - slopes.double()[:, None, None] * (diag - j).abs()[None]
    visible = torch.ones(sq, sk, dtype=torch.bool, device=q.device)
    if window[0] >= 0:
        visible &= j >= diag - window[0]
    if window[1] >= 0:
        visible &= j <= diag + window[1]
    s = s.masked_fill(~visible[None], -math.inf)
    if sinks is not None:
        s = torch.cat([s, sinks.double()[:, None, None].expand(hq, sq, 1)], -1)
        vv = torch.cat([vv, torch.zeros_like(vv[:, :1])], 1)
    lse = torch.logsumexp(s, -1)
    empty = torch.isinf(lse) & (lse < 0)
    p = torch.where(empty[..., None], torch.zeros_like(s), torch.exp(s - lse[..., None]))
    return torch.einsum("hij,hjd->hid", p, vv), lse


# ---- checks ---------------------------------------------------------------------------

FAILURES = []


def expect(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")
    if not ok:
        FAILURES.append(name)


def close(name, got, want, tol):
    got, want = got.double(), want.double()
    if torch.isnan(want).any() or torch.isnan(got).any():
        same = torch.equal(torch.isnan(got), torch.isnan(want))
        mask = ~torch.isnan(want)
        got, want = got[mask], want[mask]
        if not same:
            expect(name, False, "NaN pattern differs")
            return
    finite = torch.isfinite(want)
    if not torch.equal(torch.isfinite(got), finite) or not torch.equal(got[~finite],
                                                                       want[~finite]):
        expect(name, False, "inf pattern differs")
        return
    err = (got[finite] - want[finite]).abs().max().item() if finite.any() else 0.0
    scale = want[finite].abs().max().item() if finite.any() else 1.0
    expect(name, err <= tol * max(scale, 1e-3), f"max err {err:.3g} (scale {scale:.3g})")


def make_case(batch=3, hq=8, hkv=2, d=128, snew=1, lens=(0, 5, 300), page_size=None,
              dtype=torch.bfloat16, append=False, rotary=None, capacity=None):
    """Random cache and inputs; paged caches get their pages in random order."""
    g = torch.Generator(device="cuda").manual_seed(random.randrange(1 << 30))
    rnd = lambda *shape, dt=dtype: torch.randn(*shape, generator=g, device="cuda").to(dt)
    longest = max(lens) + snew
    capacity = capacity or longest
    case = {"q": rnd(batch, hq, snew, d), "seqlens": torch.tensor(lens, dtype=torch.int32,
                                                                  device="cuda"),
            "page_size": page_size, "block_table": None}
    if page_size is None:
        case["k_cache"], case["v_cache"] = rnd(batch, capacity, hkv, d), rnd(batch, capacity,
                                                                              hkv, d)
    else:
        per_seq = (capacity + page_size - 1) // page_size
        pages = batch * per_seq + 3
        order = torch.randperm(pages, device="cuda")[:batch * per_seq].to(torch.int32)
        case["block_table"] = order.view(batch, per_seq).contiguous()
        case["k_cache"], case["v_cache"] = rnd(pages, page_size, hkv, d), rnd(pages, page_size,
                                                                               hkv, d)
    if append:
        case["k_new"], case["v_new"] = rnd(batch, hkv, snew, d), rnd(batch, hkv, snew, d)
    if rotary:
        rows = (capacity + (page_size or 0)) + 8
        half = rotary // 2
        angles = torch.rand(rows, half, generator=g, device="cuda") * 6.28
        case["cos"], case["sin"] = angles.cos().contiguous(), angles.sin().contiguous()
    return case


def run_case(name, case, tol, interleaved=False, **options):
    q = case["q"]
    batch, hq, snew, d = q.shape
    before_k, before_v = case["k_cache"].clone(), case["v_cache"].clone()
    lens = case["seqlens"].tolist()
    out = torch.full_like(q, float("nan"))
    lse = torch.full((batch, hq, snew), float("nan"), device="cuda")
    flags = options.pop("flags", 0) | (FLAG_ROTARY_INTERLEAVED if interleaved else 0)
    a = kvcache_args(q, case["k_cache"], case["v_cache"], case["seqlens"], out, lse,
                     block_table=case["block_table"], k_new=case.get("k_new"),
                     v_new=case.get("v_new"), cos=case.get("cos"), sin=case.get("sin"),
                     flags=flags, stream=torch.cuda.current_stream().cuda_stream, **options)
    kvcache_forward(a)
    torch.cuda.synchronize()
    scale = 1.0 / math.sqrt(d)
    ps = case["page_size"] or 1
    want_out, want_lse = torch.empty_like(out, dtype=torch.float64), torch.empty_like(lse,
                                                                                      dtype=torch.float64)
    for b in range(batch):
        L = lens[b]
        qb = q[b].float()
        if "cos" in case:
            qb = rotate(qb, case["cos"], case["sin"], torch.arange(snew, device="cuda") + L,
                        interleaved).to(q.dtype).float()
        kb = gather(before_k, b, L, case["block_table"], ps).float().transpose(0, 1)
        vb = gather(before_v, b, L, case["block_table"], ps).float().transpose(0, 1)
        if "k_new" in case:
            kn = case["k_new"][b].float()
            if "cos" in case:
                kn = rotate(kn, case["cos"], case["sin"], torch.arange(snew, device="cuda") + L,
                            interleaved)
            kn = kn.to(q.dtype).float()
            kb = torch.cat([kb, kn], 1)
            vb = torch.cat([vb, case["v_new"][b].float()], 1)
            # The cache after the call holds the appended rows.
            got_k = gather(case["k_cache"], b, L + snew, case["block_table"], ps)[L:]
            expect(f"{name} appended k b{b}", torch.equal(got_k.transpose(0, 1).float(), kn))
        slopes = options.get("alibi")
        want_out[b], want_lse[b] = reference(
            qb, kb, vb, scale, options.get("softcap", 0.0),
            (options.get("window", (-1, -1))[0],
             0 if flags & FLAG_CAUSAL else options.get("window", (-1, -1))[1]),
            options.get("sinks"), slopes[b] if slopes is not None and slopes.dim() == 2
            else slopes)
    close(f"{name} out", out, want_out, tol)
    close(f"{name} lse", lse, want_lse, 2e-3)


def checks(quick=False):
    torch.manual_seed(1)
    random.seed(1)
    bf, fp = 1.6e-2, 4e-3
    if quick:  # the sanitizer's reduced set: every kernel and path once, small shapes
        run_case("quick split", make_case(lens=(0, 7, 700)), bf, num_splits=3)
        run_case("quick paged append rotary", make_case(snew=3, append=True, page_size=16,
                                                        rotary=32, lens=(0, 40, 99)), bf,
                 flags=FLAG_CAUSAL, num_splits=2, sinks=torch.zeros(8, device="cuda"))
        run_case("quick d256 fp16", make_case(d=256, dtype=torch.float16, lens=(3, 300, 1)), fp)
        merge_check()
        print(f"checks: {'all passed' if not FAILURES else f'{len(FAILURES)} FAILED'}")
        return
    for splits in (0, 1, 5):
        run_case(f"dense splits={splits}", make_case(lens=(0, 7, 3000)), bf, num_splits=splits)
    for d in (64, 256, 40, 96):
        run_case(f"dense d={d}", make_case(d=d, lens=(1, 900, 4100)), bf)
    run_case("fp16", make_case(dtype=torch.float16, lens=(33, 2000, 17)), fp)
    run_case("MHA", make_case(hq=4, hkv=4, lens=(10, 5000, 1)), bf)
    for ps in (1, 16, 64, 256):
        run_case(f"paged ps={ps}", make_case(page_size=ps, lens=(0, 700, 2500)), bf)
    for snew in (1, 4, 16):
        run_case(f"append snew={snew} causal", make_case(snew=snew, append=True,
                                                         lens=(0, 100, 1500)), bf,
                 flags=FLAG_CAUSAL)
        run_case(f"append paged snew={snew}", make_case(snew=snew, append=True, page_size=16,
                                                        lens=(3, 40, 999)), bf,
                 flags=FLAG_CAUSAL)
    for inter in (False, True):
        run_case(f"rotary interleaved={inter}", make_case(snew=3, append=True, rotary=64,
                                                          lens=(0, 64, 513)), bf,
                 interleaved=inter, flags=FLAG_CAUSAL)
    g = torch.Generator(device="cuda").manual_seed(5)
    sinks = torch.randn(8, generator=g, device="cuda")
    slopes = torch.rand(3, 8, generator=g, device="cuda") * 0.1
    run_case("window", make_case(snew=4, lens=(10, 600, 3000)), bf, window=(100, 0))
    run_case("softcap", make_case(lens=(10, 600, 3000)), bf, softcap=5.0)
    run_case("sinks", make_case(lens=(0, 600, 3000)), bf, sinks=sinks)
    run_case("alibi", make_case(snew=2, lens=(10, 600, 3000)), bf, alibi=slopes,
             flags=FLAG_CAUSAL)
    run_case("all features split", make_case(snew=3, append=True, page_size=64, rotary=32,
                                             lens=(0, 2000, 9000)), bf, window=(500, 0),
             softcap=20.0, sinks=sinks, alibi=slopes[0].contiguous(), num_splits=7)
    run_case("trusted", make_case(lens=(5, 6000, 30), capacity=8192), bf, max_seqlen_k=8192,
             num_splits=0)
    run_case("long 32k", make_case(batch=2, lens=(32768, 12)), bf)
    run_case("prefill route", make_case(batch=2, snew=128, append=True, lens=(0, 3000),
                                        capacity=4096), bf, flags=FLAG_CAUSAL,
             max_seqlen_k=4096)
    # NaN in one q row: that row (and only it) NaN.
    case = make_case(lens=(50, 600, 3000))
    case["q"][1, 3, 0, 5] = float("nan")
    run_case("NaN row", case, bf)
    merge_check()
    graph_check()
    print(f"checks: {'all passed' if not FAILURES else f'{len(FAILURES)} FAILED: ' + ', '.join(FAILURES)}")


def merge_check():
    parts_out = [torch.randn(2, 4, 3, 64, device="cuda").to(torch.bfloat16) for _ in range(3)]
    parts_lse = [torch.randn(2, 4, 3, device="cuda") for _ in range(3)]
    parts_lse[1][0, 0, 0] = -math.inf
    for lse in parts_lse:
        lse[1, 1, 1] = -math.inf
    table = (ctypes.c_char * (LAYOUT["fa_tensor"]["size"] * 6))()
    blob = b"".join(pack_tensor(t) for pair in zip(parts_out, parts_lse) for t in pair)
    ctypes.memmove(table, blob, len(blob))
    out = torch.full((2, 4, 3, 64), float("nan"), device="cuda")
    lse = torch.full((2, 4, 3), float("nan"), device="cuda")
    a = Args("fa_merge_args")
    a.set("parts", "<Q", ctypes.addressof(table))
    a.set("num_parts", "<i", 3)
    a.tensor("out", out)
    a.tensor("lse", lse)
    check(LIB.fa_merge(a.buf), "fa_merge")
    torch.cuda.synchronize()
    stacked = torch.stack(parts_lse)
    want_lse = torch.logsumexp(stacked, 0)
    w = torch.exp(stacked - want_lse).nan_to_num(0.0)
    want = (w[..., None] * torch.stack(parts_out).float()).sum(0)
    close("merge out", out, want, 1e-5)
    close("merge lse", lse, want_lse, 1e-5)


def graph_check():
    """A captured step with FA_FLAG_ADVANCE_SEQLENS replayed 3 times = 3 direct calls."""
    results = []
    for use_graph in (False, True):
        torch.manual_seed(7)
        case = make_case(batch=4, snew=1, append=True, lens=(0, 10, 100, 1000), capacity=1100)
        stream = torch.cuda.Stream()
        out = torch.empty_like(case["q"])
        a = kvcache_args(case["q"], case["k_cache"], case["v_cache"], case["seqlens"], out,
                         k_new=case["k_new"], v_new=case["v_new"], flags=FLAG_ADVANCE,
                         max_seqlen_k=1100, stream=stream.cuda_stream)
        ws = workspace_for(a)
        a = kvcache_args(case["q"], case["k_cache"], case["v_cache"], case["seqlens"], out,
                         k_new=case["k_new"], v_new=case["v_new"], flags=FLAG_ADVANCE,
                         max_seqlen_k=1100, stream=stream.cuda_stream, workspace=ws)
        outs = []
        if use_graph:
            handle = ctypes.c_uint64(0)
            check(LIB.fa_graph_begin_capture(0, ctypes.c_uint64(stream.cuda_stream)), "capture")
            kvcache_forward(a)
            check(LIB.fa_graph_end_capture(0, ctypes.c_uint64(stream.cuda_stream),
                                           ctypes.byref(handle)), "end capture")
        for _ in range(3):
            if use_graph:
                check(LIB.fa_graph_launch(0, handle, ctypes.c_uint64(stream.cuda_stream)),
                      "launch")
            else:
                kvcache_forward(a)
            stream.synchronize()
            outs.append(out.clone())
        results.append((outs, case["seqlens"].clone(), case["k_cache"].clone()))
        if use_graph:
            check(LIB.fa_graph_destroy(0, handle), "destroy")
    (o1, l1, k1), (o2, l2, k2) = results
    expect("graph replay out", all(torch.equal(x, y) for x, y in zip(o1, o2)))
    expect("graph replay lengths", torch.equal(l1, l2) and l1.tolist() == [3, 13, 103, 1003])
    expect("graph replay cache", torch.equal(k1, k2))


# ---- timing ---------------------------------------------------------------------------

def spread(lo, hi, seed, batch):
    return [int(math.floor(lo * (hi / lo) ** (((b + seed) % batch) / (batch - 1) if batch > 1
                                              else 0) + 0.5)) for b in range(batch)]


def row_lengths(row):
    lens = row["cache_lens"]
    if isinstance(lens, dict):
        return spread(lens["spread"][0], lens["spread"][1], lens.get("seed", 0), row["batch"])
    return [lens] * row["batch"]


def time_row(row, page_size=None, append=False, num_splits=0):
    """Our median us for one row: attend over L_b + Snew keys (cache holds them)."""
    b, hq, hkv, d, snew = (row["batch"], row["heads_q"], row["heads_kv"], row["head_dim"],
                           row["seqlen_new"])
    lens = row_lengths(row)
    # The cache already holds the Snew rows: attend over lens + snew, or append them.
    stored = lens if append else [L + snew for L in lens]
    capacity = max(lens) + snew
    dt = torch.bfloat16
    q = torch.randn(b, hq, snew, d, device="cuda", dtype=dt)
    if page_size is None:
        k = torch.randn(b, capacity, hkv, d, device="cuda", dtype=dt)
        table = None
    else:
        per_seq = (capacity + page_size - 1) // page_size
        k = torch.randn(b * per_seq, page_size, hkv, d, device="cuda", dtype=dt)
        table = torch.randperm(b * per_seq, device="cuda").to(torch.int32).view(b, per_seq)
    v = torch.randn_like(k)
    seqlens = torch.tensor(stored, dtype=torch.int32, device="cuda")
    kn = torch.randn(b, hkv, snew, d, device="cuda", dtype=dt) if append else None
    vn = torch.randn_like(kn) if append else None
    out = torch.empty_like(q)
    stream = torch.cuda.current_stream().cuda_stream
    flags = FLAG_CAUSAL if row["causal"] else 0
    common = dict(block_table=table, k_new=kn, v_new=vn, flags=flags, max_seqlen_k=capacity,
                  stream=stream, num_splits=num_splits)
    ws = workspace_for(kvcache_args(q, k, v, seqlens, out, **common))
    a = kvcache_args(q, k, v, seqlens, out, workspace=ws, **common)
    fn = lambda: LIB.fa_kvcache_forward(a.buf)
    check(fn(), row["label"])
    us = do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3
    del k, v
    torch.cuda.empty_cache()
    return us


def time_copy(row):
    """A copy of the new rows (what append adds over attend alone), K and V."""
    n = row["batch"] * row["heads_kv"] * row["seqlen_new"] * row["head_dim"]
    src = torch.randn(2, n, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    return do_bench(lambda: dst.copy_(src), warmup=25, rep=100, return_mode="median") * 1e3


def timings(args):
    rows = json.load(open(os.path.join(HERE, "decode_rows.json")))["rows"]
    wanted = set(args.rows.split(",")) if args.rows else None
    result = {"device": torch.cuda.get_device_name(), "rows": {}}
    for row in rows:
        if wanted and row["label"] not in wanted and row["group"] not in wanted:
            continue
        entry = {"us": time_row(row),
                 "kv_bytes": sum(2 * L * row["heads_kv"] * row["head_dim"] * 2
                                 for L in row_lengths(row))}
        if row["group"] == "decode" and row["head_dim"] == 128:
            for ps in (16, 64, 256):
                entry[f"paged{ps}_us"] = time_row(row, page_size=ps)
            entry["append_us"] = time_row(row, append=True)
            entry["copy_us"] = time_copy(row)
        result["rows"][row["label"]] = entry
        print(f"{row['label']:40s} {entry['us']:9.1f} us  "
              f"{entry['kv_bytes'] / entry['us'] / 1e6:6.2f} TB/s  " +
              " ".join(f"{k}={v:.1f}" for k, v in entry.items() if k.endswith("_us")),
              flush=True)
    result["graph"] = graph_timing()
    print("graph:", result["graph"])
    if args.json:
        json.dump(result, open(args.json, "w"), indent=1)


def sweep(args):
    """Each decode row at num_splits 1, 2, 4, ... 128 beside the heuristic's (0): the data
    to tune plan_splits (cuda/api/cuda_kvcache.cu) from, in one call."""
    rows = json.load(open(os.path.join(HERE, "decode_rows.json")))["rows"]
    wanted = set(args.rows.split(",")) if args.rows else None
    result = {"device": torch.cuda.get_device_name(), "rows": {}}
    for row in rows:
        if row["group"] == "prefill" or (wanted and row["label"] not in wanted and
                                         row["group"] not in wanted):
            continue
        times = {n: time_row(row, num_splits=n) for n in (0, 1, 2, 4, 8, 16, 32, 64, 128)}
        result["rows"][row["label"]] = times
        best = min(times, key=times.get)
        print(f"{row['label']:40s} heuristic {times[0]:8.1f} us, best {times[best]:8.1f} us at "
              f"{best}: " + " ".join(f"{n}:{t:.0f}" for n, t in times.items()), flush=True)
    if args.json:
        json.dump(result, open(args.json, "w"), indent=1)


def graph_timing(layers=32):
    """Host time of a 32-layer decode step: 32 direct calls against one graph launch."""
    b, hq, hkv, d, L = 8, 32, 8, 128, 4096
    stream = torch.cuda.Stream()
    caches = [(torch.randn(b, L + 64, hkv, d, device="cuda", dtype=torch.bfloat16),
               torch.randn(b, L + 64, hkv, d, device="cuda", dtype=torch.bfloat16))
              for _ in range(layers)]
    q = torch.randn(b, hq, 1, d, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(q)
    seqlens = torch.full((b,), L, dtype=torch.int32, device="cuda")
    args = []
    for k, v in caches:
        a = kvcache_args(q, k, v, seqlens, out, max_seqlen_k=L + 64, stream=stream.cuda_stream)
        ws = workspace_for(a)
        args.append((kvcache_args(q, k, v, seqlens, out, max_seqlen_k=L + 64,
                                  stream=stream.cuda_stream, workspace=ws), ws))
    import time

    def direct():
        for a, _ in args:
            LIB.fa_kvcache_forward(a.buf)

    handle = ctypes.c_uint64(0)
    check(LIB.fa_graph_begin_capture(0, ctypes.c_uint64(stream.cuda_stream)), "capture")
    direct()
    check(LIB.fa_graph_end_capture(0, ctypes.c_uint64(stream.cuda_stream), ctypes.byref(handle)),
          "end")
    replay = lambda: LIB.fa_graph_launch(0, handle, ctypes.c_uint64(stream.cuda_stream))
    res = {}
    for name, fn in (("direct", direct), ("graph", replay)):
        for _ in range(5):
            fn()
        stream.synchronize()
        host = []
        for _ in range(50):
            t0 = time.perf_counter()
            fn()
            host.append((time.perf_counter() - t0) * 1e6)
            stream.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(stream):
            start.record()
            for _ in range(20):
                fn()
            end.record()
        end.synchronize()
        res[name] = {"host_us": sorted(host)[len(host) // 2],
                     "step_us": start.elapsed_time(end) * 1e3 / 20}
    check(LIB.fa_graph_destroy(0, handle), "destroy")
    return res


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["check", "time", "sweep"])
    parser.add_argument("--json")
    parser.add_argument("--rows")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.what == "check":
        checks(args.quick)
        sys.exit(1 if FAILURES else 0)
    if args.what == "sweep":
        sweep(args)
        return
    timings(args)


if __name__ == "__main__":
    main()
