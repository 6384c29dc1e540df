#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into OUT/<target>/ (scripts/fuzz.sh calls this).

Seeds come from the repository (example specs, fixture configs, the golden IR tests split into
their cases and expected outputs, the target JSON files) and from small files written here with
the standard library alone: safetensors of every dtype, .npy of every dtype, order and version,
.npz archives stored and deflated, layout files. Files over 64 KiB are left out: they would
slow every mutation down and teach the fuzzer nothing the small ones do not.
"""
import json
import pathlib
import struct
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_SEED = 64 * 1024


def write(out, target, name, data):
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_SEED:
        return
    folder = out / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def copy_files(out, target, paths):
    for path in paths:
        rel = path.relative_to(ROOT).as_posix().replace("/", "_")
        write(out, target, rel, path.read_bytes())


def ir_cases(text):
    """The modules of a golden file: each case's input and its CHECK lines as a module."""
    for case in text.split("// -----"):
        lines = case.splitlines()
        source = [l for l in lines if not l.startswith("//")]
        if any(l.startswith("module") for l in source):
            yield "\n".join(source) + "\n"
        checked = []
        for l in lines:
            for prefix in ("// CHECK: ", "// CHECK-NEXT: "):
                if l.startswith(prefix):
                    checked.append(l[len(prefix):])
        body = [l for l in checked if not l.startswith("remark:")]
        if body and body[0].startswith("module"):
            yield "\n".join(body) + "\n"


def npy(descr, shape, data, fortran=False, version=(1, 0)):
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (
        descr, "True" if fortran else "False", dims)
    length = 2 if version == (1, 0) else 4
    pad = 64 - (6 + 2 + length + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    size = struct.pack("<H" if length == 2 else "<I", len(header))
    return b"\x93NUMPY" + bytes(version) + size + header.encode("latin1") + data


def safetensors(entries, metadata=None):
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blob = b""
    for name, dtype, shape, data in entries:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def zip_bytes(members, compression):
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def main():
    out = pathlib.Path(sys.argv[1])

    copy_files(out, "spec", sorted(ROOT.glob("examples/*.vit")) +
               sorted(ROOT.glob("tests/fixtures/*/*.vit")) + sorted(ROOT.glob("bench/*.vit")))

    n = 0
    for path in sorted(ROOT.glob("tests/passes/**/*.ir")):
        for module in ir_cases(path.read_text()):
            write(out, "ir", "golden_%03d.ir" % n, module)
            n += 1

    configs = sorted(ROOT.glob("tests/fixtures/*/config.json"))
    copy_files(out, "hf_config", configs)
    write(out, "hf_config", "minimal.json", '{"model_type": "vit", "hidden_size": 64, '
          '"num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 128, '
          '"image_size": [32, 32], "patch_size": 8, "hidden_act": "gelu_new", '
          '"architectures": ["ViTForImageClassification"], '
          '"id2label": {"0": "cat", "1": "dog"}, "layer_norm_eps": 1e-6, "qkv_bias": false}')

    f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    write(out, "safetensors", "f32.safetensors", safetensors(
        [("a", "F32", [2, 3], f32), ("b", "F32", [], f32[:4])], {"format": "pt"}))
    for dtype, size in [("F16", 2), ("BF16", 2), ("F64", 8), ("I8", 1), ("I16", 2), ("I32", 4),
                        ("I64", 8), ("U8", 1), ("U16", 2), ("U32", 4), ("U64", 8), ("BOOL", 1),
                        ("F8_E4M3", 1), ("C64", 8)]:
        write(out, "safetensors", dtype.lower() + ".safetensors",
              safetensors([("w", dtype, [3], bytes(range(1, 3 * size + 1)))]))
    write(out, "safetensors", "gap_and_empty.safetensors", safetensors(
        [("e", "F32", [0, 5], b""), ("x", "U8", [1], b"\x07")]) + b"\0" * 3)

    for descr, size in [("<f4", 4), (">f4", 4), ("<f2", 2), ("<f8", 8), (">f8", 8), ("|i1", 1),
                        ("|u1", 1), ("<i2", 2), (">u2", 2), ("<i4", 4), ("<u4", 4), ("<i8", 8),
                        (">u8", 8), ("|b1", 1), ("<c8", 8), ("<U3", 12)]:
        name = descr.replace("<", "le_").replace(">", "be_").replace("|", "")
        write(out, "npy", name + ".npy", npy(descr, [2, 3], bytes(range(6 * size))))
    write(out, "npy", "fortran.npy", npy("<f4", [2, 3, 2], bytes(48), fortran=True))
    write(out, "npy", "scalar.npy", npy("<f4", [], bytes(4)))
    write(out, "npy", "empty.npy", npy("<f4", [0, 4], b""))
    write(out, "npy", "v2.npy", npy("<f4", [2], bytes(8), version=(2, 0)))
    write(out, "npy", "v3.npy", npy("<f4", [2], bytes(8), version=(3, 0)))
    copy_files(out, "npy", sorted(ROOT.glob("tests/fixtures/*/*.npy")))

    members = [("a.npy", npy("<f4", [2, 2], bytes(16))), ("b/c.npy", npy("<i2", [3], bytes(6))),
               ("notes.txt", b"not an array")]
    write(out, "npz", "stored.npz", zip_bytes(members, zipfile.ZIP_STORED))
    write(out, "npz", "deflated.npz", zip_bytes(members, zipfile.ZIP_DEFLATED))
    copy_files(out, "npz", sorted(ROOT.glob("tests/frontend/formats/data/*.npz")) +
               sorted(ROOT.glob("tests/fixtures/*/*.npz")))

    copy_files(out, "layout", sorted(ROOT.glob("examples/targets/*.json")))
    write(out, "layout", "layout.json", json.dumps({
        "mesh": {"data": 2, "model": 4}, "data_axis": "data", "model_axis": "model",
        "activations": "tokens", "params_over_data": True, "params_over_data_min_bytes": 1048576,
        "collective_matmul": False, "microbatches": 2, "predicted": {"seconds": 1.5},
        "comment": "written by hand"}, indent=2))
    write(out, "layout", "replicated.json", '{"activations": "replicated"}')
    write(out, "layout", "target.json", json.dumps({
        "name": "t", "peak_flops": 1e12, "memory_bandwidth": 1e11, "memory_bytes": 1 << 34,
        "matmul_efficiency": 0.5, "op_overhead_us": 3, "dtype_bytes": 2, "cores_per_host": 8,
        "links": {"*": {"gbps": 10, "latency_us": 5}, "model": {"gbps": 100}}}))


if __name__ == "__main__":
    main()
