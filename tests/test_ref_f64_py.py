#!/usr/bin/env python3
"""q4k's CPU logits against tests/ref_f64.py: an exact float64 forward pass
whose file reading and dequantization come from the `gguf` package, not from
q4k. Float activations over an f32 KV cache must agree to cosine 0.99999 at
every position; over the default f16 cache too once the float64 side rounds
K and V to f16; 8-bit activations are a different arithmetic and must show
it (below 0.99999 but above 0.999), which proves the oracle can tell."""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Q4K = os.path.join(ROOT, "q4k")
REF = os.path.join(ROOT, "tests", "ref_f64.py")


def ref(model, name, *args):
    p = subprocess.run([sys.executable, REF, model, "--name", name] + list(args), capture_output=True, text=True)
    out = p.stdout + p.stderr
    if p.returncode not in (0, 1) or ("ok " + name) not in out and ("FAIL " + name) not in out:
        print(f"FAIL {name}: ref_f64.py did not run: {out[-400:]}")
        return None
    return ("ok " + name) in out, out


def main():
    with tempfile.TemporaryDirectory() as d:
        models = {}
        for name, extra in (("tiny", []), ("mixed", ["--quant", "mixed"])):
            path = os.path.join(d, name + ".gguf")
            subprocess.run([Q4K, "synth", path, "--preset", "tiny"] + extra, check=True, capture_output=True)
            models[name] = path
        for name, path in models.items():
            for label, args, want in (
                ("f32_kv_f32", ["--act", "f32", "--kv", "f32", "--min-cos", "0.99999"], True),
                ("f32_kv_f16_rounded", ["--act", "f32", "--kv", "f16", "--round-kv", "--min-cos", "0.99999"], True),
                ("q8_is_different", ["--act", "q8", "--kv", "f16", "--round-kv", "--min-cos", "0.99999"], False),
                ("q8_close", ["--act", "q8", "--kv", "f16", "--round-kv", "--min-cos", "0.999"], True),
            ):
                tag = f"ref_f64_{name}_{label}"
                r = ref(path, tag, "--tokens", "12", *args)
                if r is None:
                    continue
                passed, out = r
                summary = [ln.strip() for ln in out.splitlines() if "min cosine" in ln]
                if passed == want:
                    print(f"ok {tag}" + (f" ({summary[0]})" if summary else ""))
                else:
                    print(f"FAIL {tag}: expected {'pass' if want else 'fail'} at the threshold: {out[-600:]}")


if __name__ == "__main__":
    main()
