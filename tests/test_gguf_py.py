#!/usr/bin/env python3
"""The files q4k writes load in the reference Python reader (gguf.GGUFReader)
with every key, value, type and tensor as written. The sample comes from
build/tool_gguf_write (whole-file and streamed, alignment 32 and 64)."""
import os
import subprocess
import sys
import tempfile

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

try:
    import numpy as np
    from gguf import GGUFReader, GGUFValueType as VT, GGMLQuantizationType as QT
except ImportError:
    print("skip test_gguf_py: python package gguf missing")
    sys.exit(0)

TOOL = "build/tool_gguf_write"
failed = 0


def check(name, fn):
    global failed
    try:
        fn()
        print(f"ok {name}")
    except Exception as e:  # one line per failure, then carry on
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")


# what tool_gguf_write writes: key -> (types as GGUFReader lists them, value)
SCALARS = {
    "general.architecture": (VT.STRING, "llama"),
    "general.name": (VT.STRING, 'q4k sample \u2713 "quoted"\n'),
    "sample.u8": (VT.UINT8, 200),
    "sample.i8": (VT.INT8, -100),
    "sample.u16": (VT.UINT16, 60000),
    "sample.i16": (VT.INT16, -30000),
    "sample.u32": (VT.UINT32, 4000000000),
    "sample.i32": (VT.INT32, -2000000000),
    "sample.f32": (VT.FLOAT32, 0.15625),
    "sample.bool": (VT.BOOL, True),
    "sample.u64": (VT.UINT64, 1152921504606846977),
    "sample.i64": (VT.INT64, -1152921504606846977),
    "sample.f64": (VT.FLOAT64, -2.718281828459045),
}
ARRAYS = {
    "sample.arr_u8": (VT.UINT8, [0, 1, 255]),
    "sample.arr_i8": (VT.INT8, [-128, 0, 127]),
    "sample.arr_u16": (VT.UINT16, [0, 65535]),
    "sample.arr_i16": (VT.INT16, [-32768, 32767]),
    "sample.arr_u32": (VT.UINT32, [0, 4294967295]),
    "sample.arr_i32_long": (VT.INT32, [i * i - 50 for i in range(100)]),
    "sample.arr_f32": (VT.FLOAT32, [0.5, -1.25, float(np.float32(1e-6))]),
    "sample.arr_bool": (VT.BOOL, [True, False, True]),
    "sample.arr_u64": (VT.UINT64, [18446744073709551615]),
    "sample.arr_i64": (VT.INT64, [-9223372036854775808, 9223372036854775807]),
    "sample.arr_f64": (VT.FLOAT64, [3.141592653589793, -0.1]),
    "sample.arr_str": (VT.STRING, ["", "hello", "h\u00e9llo", 'quote" back\\slash', "tab\tnl\n"]),
    "tokenizer.ggml.tokens": (VT.STRING, [f"tok{i}" for i in range(20)]),
}
# sample.arr_nested = [[1, 2, 3] INT32, ["x", "y"], [[1.5] FLOAT32], [] UINT8]
# GGUFReader flattens nested arrays into parts; this is that flat list
# after the key's length and bytes: value type, element type, count, ...
NESTED_PARTS_WITH_TYPE = [VT.ARRAY, VT.ARRAY, 4,
                VT.INT32, 3, 1, 2, 3,
                VT.STRING, 2, 1, b"x", 1, b"y",
                VT.ARRAY, 1, VT.FLOAT32, 1, 1.5,
                VT.UINT8, 0]
TENSORS = [  # name, type, shape (ne order)
    ("token_embd.weight", QT.Q4_K, [256, 4]),
    ("blk.0.attn_q.weight", QT.Q5_K, [512, 2]),
    ("blk.0.ffn_down.weight", QT.Q6_K, [256, 3]),
    ("blk.0.attn_k.weight", QT.Q8_0, [64, 3]),
    ("blk.0.attn_v.weight", QT.Q4_0, [32, 2, 2]),
    ("blk.0.ffn_up.weight", QT.Q5_0, [96, 1]),
    ("blk.0.attn_norm.weight", QT.F32, [16]),
    ("blk.0.ffn_gate.weight", QT.F16, [8, 2, 3, 2]),
    ("output_norm.weight", QT.BF16, [24]),
]
BLOCK = {QT.F32: (1, 4), QT.F16: (1, 2), QT.BF16: (1, 2), QT.Q8_0: (32, 34), QT.Q4_0: (32, 18),
         QT.Q5_0: (32, 22), QT.Q4_K: (256, 144), QT.Q5_K: (256, 176), QT.Q6_K: (256, 210)}


def expected_bytes(i, n):
    j = np.arange(n, dtype=np.uint64)
    return ((j * 131 + i * 29 + 7) % 256).astype(np.uint8).tobytes()


def check_file(path, align):
    r = GGUFReader(path)
    keys = [k for k in r.fields if not k.startswith("GGUF.")]
    want_keys = (["general.alignment"] if align != 32 else []) + list(SCALARS) + \
        [k for k in ARRAYS if k != "tokenizer.ggml.tokens"] + ["sample.arr_empty", "tokenizer.ggml.tokens", "sample.arr_nested"]
    assert sorted(keys) == sorted(want_keys), f"keys {sorted(set(keys) ^ set(want_keys))}"
    assert int(r.fields["GGUF.version"].parts[0][0]) == 3
    assert r.alignment == align, r.alignment
    assert r.data_offset % align == 0, r.data_offset
    if align != 32:
        f = r.fields["general.alignment"]
        assert f.types == [VT.UINT32] and f.contents() == align
    for k, (t, v) in SCALARS.items():
        f = r.fields[k]
        assert f.types == [t], f"{k}: types {f.types}"
        got = f.contents()
        assert got == v and type(got) is type(v), f"{k}: {got!r} != {v!r}"
    for k, (t, v) in ARRAYS.items():
        f = r.fields[k]
        assert f.types == [VT.ARRAY, t], f"{k}: types {f.types}"
        got = f.contents()
        assert got == v, f"{k}: {got!r} != {v!r}"
    f = r.fields["sample.arr_empty"]
    assert f.types == [VT.ARRAY] and f.contents() == [] and int(f.parts[4][0]) == 0, f.types
    assert int(f.parts[3][0]) == VT.FLOAT32
    f = r.fields["sample.arr_nested"]
    assert f.types == [VT.ARRAY, VT.ARRAY, VT.INT32], f.types
    # the only uint8 parts of this field are string bytes (its UINT8 array is empty)
    flat = [p.tobytes() if p.dtype == np.uint8 else p.tolist()[0] for p in f.parts[2:]]
    assert flat == NESTED_PARTS_WITH_TYPE, f"nested parts {flat} != {NESTED_PARTS_WITH_TYPE}"

    assert len(r.tensors) == len(TENSORS), len(r.tensors)
    for i, (t, (name, qt, shape)) in enumerate(zip(r.tensors, TENSORS)):
        bs, ts = BLOCK[qt]
        n_el = int(np.prod(shape))
        nbytes = n_el // bs * ts
        assert t.name == name, t.name
        assert t.tensor_type == qt, f"{name}: {t.tensor_type!r}"
        assert [int(x) for x in t.shape] == shape, f"{name}: shape {t.shape}"
        assert t.n_elements == n_el and t.n_bytes == nbytes, f"{name}: {t.n_elements} {t.n_bytes}"
        assert (t.data_offset - r.data_offset) % align == 0, f"{name}: offset {t.data_offset}"
        assert np.asarray(t.data).tobytes() == expected_bytes(i, nbytes), f"{name}: data differs"


def python_written_reads_in_q4k(path, align):
    """The other direction: gguf.GGUFWriter writes, `q4k info --json` reads."""
    import json
    from gguf import GGUFWriter
    rng = np.random.default_rng(align)
    w = GGUFWriter(path, "qwen2")
    if align != 32:
        w.add_custom_alignment(align)
    kv = [  # key, type, value, element type for arrays
        ("p.u8", VT.UINT8, 7, None), ("p.i8", VT.INT8, -7, None), ("p.u16", VT.UINT16, 65535, None),
        ("p.i16", VT.INT16, -32768, None), ("p.u32", VT.UINT32, 4294967295, None),
        ("p.i32", VT.INT32, -2147483648, None), ("p.f32", VT.FLOAT32, 1e-6, None), ("p.bool", VT.BOOL, False, None),
        ("p.u64", VT.UINT64, 18446744073709551615, None), ("p.i64", VT.INT64, -9223372036854775808, None),
        ("p.f64", VT.FLOAT64, 0.1, None), ("p.str", VT.STRING, "Gr\u00fc\u00dfe \U0001f600\t\"x\"", None),
        ("p.arr_u16", VT.ARRAY, [1, 65535], VT.UINT16), ("p.arr_f32", VT.ARRAY, [0.25, -2.0], VT.FLOAT32),
        ("p.arr_bool", VT.ARRAY, [False, True], VT.BOOL), ("p.arr_i64", VT.ARRAY, [-1, 2], VT.INT64),
        ("p.tokens", VT.ARRAY, [f"t{i}" for i in range(1000)], VT.STRING),
        ("p.nested", VT.ARRAY, [[1, 2], [3]], None),
    ]
    for k, vt, v, sub in kv:
        w.add_key_value(k, v, vt, sub_type=sub)
    wrote = {}
    for qt, (bs, ts) in BLOCK.items():
        shape = [bs * 2 if bs > 1 else 24, 3]  # ne order
        raw = rng.integers(0, 256, size=shape[1] * (shape[0] // bs) * ts, dtype=np.uint8)
        name = f"py.{qt.name.lower()}"
        if qt == QT.F32:
            w.add_tensor(name, raw.view(np.float32).reshape(shape[1], shape[0]))
        elif qt == QT.F16:
            w.add_tensor(name, raw.view(np.float16).reshape(shape[1], shape[0]))
        else:
            w.add_tensor(name, raw.reshape(shape[1], -1), raw_dtype=qt)
        wrote[name] = (qt, shape, raw.tobytes())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    out = subprocess.run(["./q4k", "info", "--json", path], capture_output=True, text=True)
    assert out.returncode == 0, f"q4k info: rc {out.returncode}: {out.stderr.strip()}"
    d = json.loads(out.stdout)
    assert d["alignment"] == align and d["version"] == 3, (d["alignment"], d["version"])
    meta = {m["key"]: m for m in d["metadata"]}
    assert meta["general.architecture"]["value"] == "qwen2"
    for k, vt, v, sub in kv:
        m = meta[k]
        assert m["type"] == vt.name, f"{k}: {m['type']} != {vt.name}"
        if vt != VT.ARRAY:
            if vt == VT.FLOAT32:  # printed as the shortest text that reads back as the same float32
                assert np.float32(m["value"]) == np.float32(v), f"{k}: {m['value']!r} != {v!r}"
            else:
                assert m["value"] == v and type(m["value"]) is type(v), f"{k}: {m['value']!r} != {v!r}"
        elif k == "p.nested":
            assert m["elem_type"] == "ARRAY" and m["count"] == 2, m
            assert [e["value"] for e in m["value"]] == [[1, 2], [3]] and m["value"][0]["elem_type"] == "INT32", m
        else:
            assert m["elem_type"] == sub.name and m["count"] == len(v), m
            assert m["value"] == v[:8] and m["truncated"] == (len(v) > 8), f"{k}: {m['value']}"
    blob = open(path, "rb").read()
    tens = {x["name"]: x for x in d["tensors"]}
    assert sorted(tens) == sorted(wrote), sorted(tens)
    for name, (qt, shape, raw) in wrote.items():
        x = tens[name]
        assert x["type"] == qt.name and x["type_id"] == int(qt) and x["shape"] == shape, f"{name}: {x}"
        assert x["bytes"] == len(raw) and x["offset"] % align == 0, f"{name}: {x}"
        assert blob[x["file_offset"]:x["file_offset"] + x["bytes"]] == raw, f"{name}: bytes at q4k's offset differ"


def run():
    if not os.access(TOOL, os.X_OK):
        print(f"FAIL test_gguf_py: {TOOL} missing (make test-bins)")
        return 1
    with tempfile.TemporaryDirectory() as d:
        for align in (32, 64):
            for stream in (False, True):
                path = os.path.join(d, f"s{align}{'s' if stream else ''}.gguf")
                args = [TOOL, path, "--align", str(align)] + (["--stream"] if stream else [])
                subprocess.run(args, check=True)
                check(f"gguf_py_reads_sample_align{align}{'_streamed' if stream else ''}",
                      lambda: check_file(path, align))
        if not os.access("./q4k", os.X_OK):
            print("FAIL gguf_py_written_reads_in_q4k: ./q4k missing (make)")
            return 1
        for align in (32, 64):
            path = os.path.join(d, f"py{align}.gguf")
            check(f"gguf_py_written_reads_in_q4k_align{align}", lambda: python_written_reads_in_q4k(path, align))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
