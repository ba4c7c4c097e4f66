"""The only module that touches cffi: checks dtypes, shapes and contiguity, then calls C.

Every function takes and returns numpy arrays. Quantised weights are uint8 arrays of shape
[n, row_bytes] where row_bytes = row_size(type, k).
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ._slmkit_cffi import ffi, lib

# Weight types (ggml type ids, as in csrc/slmkit.h).
F32, F16, Q4_0, Q4_1, Q8_0, BF16 = (lib.SLM_F32, lib.SLM_F16, lib.SLM_Q4_0, lib.SLM_Q4_1,
                                    lib.SLM_Q8_0, lib.SLM_BF16)
TYPE_NAMES = {F32: "f32", F16: "f16", Q4_0: "q4_0", Q4_1: "q4_1", Q8_0: "q8_0", BF16: "bf16"}
QUANTIZED = (Q4_0, Q4_1, Q8_0)
# Repacked layouts (slm_repack): 8 rows interleaved block by block, made at load time; in
# memory only, never in files.
Q4_0_X8, Q4_1_X8, Q8_0_X8 = lib.SLM_Q4_0_X8, lib.SLM_Q4_1_X8, lib.SLM_Q8_0_X8
TYPE_NAMES.update({Q4_0_X8: "q4_0_x8", Q4_1_X8: "q4_1_x8", Q8_0_X8: "q8_0_x8"})
REPACKED_TYPES = (Q4_0_X8, Q4_1_X8, Q8_0_X8)
TYPES_BY_NAME = {v: k for k, v in TYPE_NAMES.items()}
BLOCK = 32

_ERRORS = {lib.SLM_E_TYPE: "unsupported weight type", lib.SLM_E_SHAPE: "inconsistent shapes",
           lib.SLM_E_NOMEM: "out of memory"}


class NativeError(RuntimeError):
    pass


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise NativeError(f"{what}: {_ERRORS.get(rc, f'error {rc}')}")


def _f32(a: np.ndarray, name: str, writable: bool = False) -> np.ndarray:
    if a.dtype != np.float32 or not a.flags.c_contiguous:
        if writable:
            raise TypeError(f"{name} must be a C-contiguous float32 array, got {a.dtype}")
        a = np.ascontiguousarray(a, dtype=np.float32)
    if writable and not a.flags.writeable:
        raise TypeError(f"{name} must be writable")
    return a


def _out(out: np.ndarray | None, shape: tuple, name: str = "out") -> np.ndarray:
    """A float32 output buffer of `shape` values: a new one, or `out` after checking it."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    out = _f32(out, name, writable=True)
    if out.size != int(np.prod(shape)):
        raise ValueError(f"{name} holds {out.size} values, expected {int(np.prod(shape))} {list(shape)}")
    return out


def _ptr(a: np.ndarray, ctype: str = "float *"):
    return ffi.cast(ctype, a.ctypes.data)


def type_id(t) -> int:
    if isinstance(t, str):
        try:
            return TYPES_BY_NAME[t.lower()]
        except KeyError:
            raise ValueError(f"unknown weight type {t!r}; known: {sorted(TYPES_BY_NAME)}") from None
    return int(t)


def row_size(wtype, k: int) -> int:
    size = lib.slm_row_size(type_id(wtype), k)
    if size == 0:
        raise NativeError(f"row_size: unsupported weight type {wtype!r}")
    return size


def kernel_name() -> str:
    return ffi.string(lib.slm_kernel_name()).decode()


def set_kernel(name: str) -> None:
    if lib.slm_set_kernel(name.encode()) != 0:
        raise ValueError(f"kernel variant {name!r} is unknown or not supported on this CPU")


def kernel_variants() -> list[str]:
    """The kernel variants this CPU runs, reference first (the active one stays active)."""
    active, out = kernel_name(), []
    for name in ("generic", "avx2", "avx512vnni"):
        if lib.slm_set_kernel(name.encode()) == 0:
            out.append(name)
    set_kernel(active)
    return out


def _check_kernel_env() -> None:
    wanted = os.environ.get("SLMKIT_KERNEL", "")
    if wanted.strip() and kernel_name() != wanted.strip().lower():
        warnings.warn(f"SLMKIT_KERNEL={wanted!r} is not a kernel variant this CPU runs "
                      f"({', '.join(kernel_variants())}); using {kernel_name()}", stacklevel=3)


def physical_cores() -> int:
    return int(lib.slm_physical_cores())


# ---- weights -------------------------------------------------------------------------------

def quantize(x: np.ndarray, wtype) -> np.ndarray:
    """Quantise float rows x[n, k] to wtype; returns uint8 [n, row_size] (f32/f16/bf16 too)."""
    t = type_id(wtype)
    x = _f32(np.atleast_2d(x), "x")
    n, k = x.shape
    out = np.empty((n, row_size(t, k)), dtype=np.uint8)
    _check(lib.slm_quantize(t, _ptr(x), _ptr(out, "void *"), n, k), f"quantize to {TYPE_NAMES.get(t, t)}")
    return out


def stored_rows(wtype, n: int) -> int:
    """Rows that n rows of wtype take in memory: repacked types fill whole groups of 8."""
    return -(-n // 8) * 8 if type_id(wtype) in REPACKED_TYPES else n


def repack(q: np.ndarray, wtype, n: int, k: int) -> tuple[np.ndarray, int]:
    """Repack uint8 rows q[n, row_size] of Q4_0/Q4_1/Q8_0 into the 8-row interleaved layout the
    kernels read fastest. Returns (bytes [ceil(n/8)*8, row_size], repacked type)."""
    t = type_id(wtype)
    rt = lib.slm_repacked_type(t)
    if rt == 0:
        raise NativeError(f"repack: {TYPE_NAMES.get(t, t)} has no repacked layout")
    q = np.ascontiguousarray(q).view(np.uint8).reshape(n, row_size(t, k))
    out = np.empty((stored_rows(rt, n), row_size(t, k)), dtype=np.uint8)
    _check(lib.slm_repack(t, _ptr(q, "void *"), _ptr(out, "void *"), n, k), "repack")
    return out, rt


def dequantize(q: np.ndarray, wtype, k: int, n: int | None = None) -> np.ndarray:
    """Dequantise uint8 rows q[n, row_size(wtype, k)] to float32 [n, k] (for a repacked type
    pass n: its storage rounds up to groups of 8 rows)."""
    t = type_id(wtype)
    q = np.ascontiguousarray(q).view(np.uint8).reshape(-1, row_size(t, k))
    n = q.shape[0] if n is None else n
    if q.shape[0] < stored_rows(t, n):
        raise ValueError(f"dequantize: {q.shape[0]} rows stored, {TYPE_NAMES.get(t, t)} [{n}, {k}] "
                         f"needs {stored_rows(t, n)}")
    out = np.empty((n, k), dtype=np.float32)
    _check(lib.slm_dequantize(t, _ptr(q, "void *"), _ptr(out), n, k), "dequantize")
    return out


# ---- thread pool ---------------------------------------------------------------------------

class Pool:
    """A fixed pool of worker threads, freed with the object."""

    def __init__(self, n_threads: int):
        self.n_threads = max(1, int(n_threads))
        ptr = lib.slm_pool_new(self.n_threads)
        if ptr == ffi.NULL:
            raise NativeError("could not start the thread pool")
        self.ptr = ffi.gc(ptr, lib.slm_pool_free)


def _pool_ptr(pool: Pool | None):
    return ffi.NULL if pool is None else pool.ptr


# ---- machine-limit probes (benchmarks) -------------------------------------------------------

def probe_read_gbps(pool: Pool | None = None, nbytes: int = 256 << 20, reps: int = 3) -> float:
    """Streaming-read bandwidth in GB/s over a buffer of nbytes (keep it far above the L3)."""
    r = lib.slm_probe_read_gbps(_pool_ptr(pool), int(nbytes), int(reps))
    _check(int(r) if r < 0 else 0, "probe_read_gbps")
    return float(r)


def probe_int8_gops(pool: Pool | None = None, iters: int = 2_000_000, reps: int = 3) -> float:
    """Peak int8 dot-product rate in GOPS (2 ops per multiply-add), all pool threads."""
    r = lib.slm_probe_int8_gops(_pool_ptr(pool), int(iters), int(reps))
    _check(int(r) if r < 0 else 0, "probe_int8_gops")
    return float(r)


# ---- ops -----------------------------------------------------------------------------------

def matmul(x: np.ndarray, w: np.ndarray, wtype, n: int, k: int, pool: Pool | None = None,
           out: np.ndarray | None = None, act_bits: int = 16) -> np.ndarray:
    """y[m, n] = x[m, k] @ W^T for W[n, k] stored as wtype (raw bytes or float array).
    act_bits=8: int8 activation blocks, for repacked weights (see slm_matmul_act)."""
    t = type_id(wtype)
    if act_bits not in (16, 8):
        raise ValueError(f"matmul: act_bits must be 16 or 8, not {act_bits!r}")
    if act_bits == 8 and t not in REPACKED_TYPES:
        raise ValueError(f"matmul: int8 activation blocks (act_bits=8) need repacked weights "
                         f"(q4_0_x8, q4_1_x8, q8_0_x8: see repack()), not {TYPE_NAMES.get(t, t)}")
    x = _f32(x, "x")
    if x.shape[-1] != k:
        raise ValueError(f"matmul: x has {x.shape[-1]} columns, weight expects k={k}")
    m = x.size // k
    need = stored_rows(t, n) * row_size(t, k)
    if w.nbytes != need or not w.flags.c_contiguous:
        raise ValueError(f"matmul: weight holds {w.nbytes} bytes, {TYPE_NAMES.get(t, t)} [{n}, {k}] "
                         f"needs {need} contiguous bytes")
    out = _out(out, x.shape[:-1] + (n,))
    rc = lib.slm_matmul_act(_pool_ptr(pool), t, _ptr(w, "void *"), _ptr(x), _ptr(out), m, n, k,
                            int(act_bits))
    if rc:                                   # the label is built only for an error (hot path)
        _check(rc, f"matmul ({TYPE_NAMES.get(t, t)}, {act_bits}-bit activations)")
    return out


def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float, out: np.ndarray | None = None) -> np.ndarray:
    x = _f32(x, "x")
    weight = _f32(weight, "weight")
    d = weight.shape[0]
    if x.shape[-1] != d:
        raise ValueError(f"rmsnorm: x has {x.shape[-1]} columns, weight has {d}")
    out = _out(out, x.shape)
    lib.slm_rmsnorm(_ptr(x), _ptr(weight), _ptr(out), x.size // d, d, eps)
    return out


def silu_mul(gate: np.ndarray, up: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    gate, up = _f32(gate, "gate"), _f32(up, "up")
    if gate.shape != up.shape:
        raise ValueError(f"silu_mul: gate {gate.shape} and up {up.shape} differ")
    out = _out(out, gate.shape)
    lib.slm_silu_mul(_ptr(gate), _ptr(up), _ptr(out), gate.size)
    return out


def add_(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x += y in place."""
    x = _f32(x, "x", writable=True)
    y = _f32(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"add: shapes {x.shape} and {y.shape} differ")
    lib.slm_add(_ptr(x), _ptr(y), x.size)
    return x


def softmax_(x: np.ndarray) -> np.ndarray:
    x = _f32(x, "x", writable=True)
    n = x.shape[-1]
    lib.slm_softmax(_ptr(x), x.size // n, n)
    return x


def rope_(x: np.ndarray, pos: np.ndarray, n_heads: int, head_dim: int, base: float,
          interleaved: bool) -> np.ndarray:
    """Rotate x[m, n_heads * head_dim] in place; pos[m] are int32 positions."""
    x = _f32(x, "x", writable=True)
    pos = np.ascontiguousarray(pos, dtype=np.int32)
    m = pos.shape[0]
    if x.size != m * n_heads * head_dim:
        raise ValueError(f"rope: x has {x.size} values, expected {m}x{n_heads}x{head_dim}")
    lib.slm_rope(_ptr(x), _ptr(pos, "int32_t *"), m, n_heads, head_dim, base, int(bool(interleaved)))
    return x


def attention(q: np.ndarray, k_new: np.ndarray, v_new: np.ndarray, k_cache: np.ndarray,
              v_cache: np.ndarray, start_pos: int, n_heads: int, n_kv_heads: int, head_dim: int,
              pool: Pool | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Causal GQA over m new rows; appends k_new/v_new to the caches [n_kv, max_seq, head_dim]."""
    q, k_new, v_new = _f32(q, "q"), _f32(k_new, "k_new"), _f32(v_new, "v_new")
    k_cache = _f32(k_cache, "k_cache", writable=True)
    v_cache = _f32(v_cache, "v_cache", writable=True)
    if n_kv_heads <= 0 or n_heads % n_kv_heads:
        raise ValueError(f"attention: n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}")
    m = q.size // (n_heads * head_dim)
    if q.size != m * n_heads * head_dim:
        raise ValueError(f"attention: q holds {q.size} values, not a multiple of {n_heads}x{head_dim}")
    for name, a in (("k_new", k_new), ("v_new", v_new)):
        if a.size != m * n_kv_heads * head_dim:
            raise ValueError(f"attention: {name} holds {a.size} values, expected {m}x{n_kv_heads}x{head_dim}")
    if k_cache.ndim != 3 or k_cache.shape != v_cache.shape or k_cache.shape[0] != n_kv_heads \
            or k_cache.shape[2] != head_dim:
        raise ValueError(f"attention: caches must both be [{n_kv_heads}, max_seq, {head_dim}], got "
                         f"{list(k_cache.shape)} and {list(v_cache.shape)}")
    max_seq = k_cache.shape[1]
    if start_pos + m > max_seq:
        raise ValueError(f"attention: {start_pos} + {m} tokens exceed the KV cache of {max_seq}")
    out = _out(out, (m, n_heads * head_dim))
    _check(lib.slm_attention(_pool_ptr(pool), _ptr(q), _ptr(k_new), _ptr(v_new), _ptr(k_cache),
                             _ptr(v_cache), _ptr(out), m, start_pos, max_seq, n_heads, n_kv_heads,
                             head_dim), "attention")
    return out


# ---- a whole Llama-family forward pass --------------------------------------------------------

class LlamaForward:
    """slm_llama: the C forward pass over weights that stay where they are (memory-mapped arrays;
    this object keeps them alive), but for the quantised matrices, which C repacks once into
    memory of its own (slm_repack) unless config["keep_layout"]. weights: embed / norm / head
    and per-layer dicts of (wtype, data, bias) tuples and norm vectors, as backends/cpu.py
    prepares them."""

    LINEARS = ("q", "k", "v", "o", "gate", "up", "down")

    def __init__(self, config: dict, embed, norm, head, layers):
        self._keep = []                       # every array C points into
        cfg = ffi.new("slm_llama_config *", config)
        c_layers = ffi.new("slm_llama_layer[]", len(layers))
        for i, layer in enumerate(layers):
            c_layers[i].attn_norm = self._floats(layer["attn_norm"])
            c_layers[i].ffn_norm = self._floats(layer["ffn_norm"])
            for name in self.LINEARS:
                self._fill(getattr(c_layers[i], name), *layer[name])
        c_embed, c_head = ffi.new("slm_weight *"), ffi.new("slm_weight *")
        self._fill(c_embed, *embed)
        self._fill(c_head, *head)
        out = ffi.new("slm_llama **")
        _check(lib.slm_llama_new(cfg, c_embed, self._floats(norm), c_head, c_layers, out),
               "llama forward: describe the model")
        self.ptr = ffi.gc(out[0], lib.slm_llama_free)
        self.vocab = config["vocab"]
        self.repacked = int(lib.slm_llama_repacked(self.ptr))       # matrices repacked at load
        self.prefill_act_bits = int(lib.slm_llama_prefill_act_bits(self.ptr))   # in effect

    def _floats(self, a: np.ndarray):
        a = np.ascontiguousarray(a, dtype=np.float32)
        self._keep.append(a)
        return _ptr(a)

    def _fill(self, c_weight, wtype, data: np.ndarray, bias=None) -> None:
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        self._keep.append(data)
        c_weight.type = type_id(wtype)
        c_weight.data = _ptr(data, "void *")
        c_weight.bias = ffi.NULL if bias is None else self._floats(bias)

    @staticmethod
    def cache_pointers(layers):
        """The pointer arrays of per-layer caches: (k, v) float32 [n_kv, max_seq, head_dim], or
        (k, v) int8 of that shape with (k_scale, v_scale) float32 [n_kv, max_seq]."""
        for layer in layers:
            for a in layer:
                if not a.flags.c_contiguous or not a.flags.writeable:
                    raise TypeError("KV caches must be writable C-contiguous arrays")
        parts = list(zip(*layers))
        ptrs = [ffi.new("void *[]", [_ptr(a, "void *") for a in part]) for part in parts[:2]]
        if len(parts) == 4:
            ptrs += [ffi.new("float *[]", [_ptr(a) for a in part]) for part in parts[2:]]
        else:
            ptrs += [ffi.NULL, ffi.NULL]
        return tuple(ptrs)

    def forward(self, ids: np.ndarray, start_pos: int, caches, max_seq: int, pool: Pool | None,
                all_logits: bool) -> np.ndarray:
        """Logits [len(ids), vocab] (all_logits) or [vocab]; caches from cache_pointers()."""
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        m = ids.shape[0]
        out = np.empty((m if all_logits else 1, self.vocab), dtype=np.float32)
        _check(lib.slm_llama_forward(self.ptr, _pool_ptr(pool), _ptr(ids, "int32_t *"), m,
                                     start_pos, *caches, max_seq, _ptr(out),
                                     int(bool(all_logits))), "llama forward")
        return out if all_logits else out[0]


_check_kernel_env()
