#!/usr/bin/env python3
"""Writes the hand-made hostile inputs under tests/fuzz/regressions/<target>/ (regressions_test.cpp).

Each is small and named after what it tries: sizes that overflow int64 products, NaN and infinity
where sizes or factors go, counts in headers that the file cannot back, archives that claim or
inflate to far more than they hold, strings that need escaping when written back, bytes that are
not UTF-8. Inputs found by the fuzzers sit next to these under names of the same kind. Run again
after editing; files it does not write are left alone.
"""
import io
import json
import pathlib
import struct
import zipfile
import zlib

OUT = pathlib.Path(__file__).resolve().parent / "regressions"
BIG = 1 << 62
I64_MAX = (1 << 63) - 1


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    folder = OUT / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def spec(encoder, extra=""):
    return "[encoder]\n" + encoder + "\n" + extra


def ir(body, mesh=""):
    return "module @m%s {\n%s\n}\n" % (mesh, body)


def npy(dict_text, data=b"", version=1):
    header = dict_text.encode("latin1")
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(header)) + header + data


def npy_f4(shape, data=None, fortran=False):
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    text = "{'descr': '<f4', 'fortran_order': %s, 'shape': (%s), }" % (fortran, dims)
    return npy(text, data if data is not None else b"")


def safetensors(header, data=b""):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def zip_of(members, compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members:
            z.writestr(name, data)
    return bytearray(buf.getvalue())


def central_headers(z):
    """Offsets of the central directory file headers of a zip image."""
    eocd = z.rfind(b"PK\x05\x06")
    count, _, start = struct.unpack_from("<HII", z, eocd + 10)
    offsets, pos = [], start
    for _ in range(count):
        offsets.append(pos)
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", z, pos + 28)
        pos += 46 + name_len + extra_len + comment_len
    return offsets


def overlapping_members(count):
    """One deflated member of zeros, listed `count` times under different names: each load
    inflates the same bytes again (a non-recursive zip bomb)."""
    data = npy_f4([1 << 16], bytes(4 << 16))
    z = zip_of([("m.npy", data)])
    eocd = z.rfind(b"PK\x05\x06")
    (start,) = struct.unpack_from("<I", z, eocd + 16)
    entry = bytes(z[start:eocd])
    name_len = struct.unpack_from("<H", entry, 28)[0]
    central = b""
    for i in range(count):
        name = b"m%03d.npy" % i
        e = bytearray(entry[:46]) + name + entry[46 + name_len:]
        struct.pack_into("<H", e, 28, len(name))
        central += e
    tail = bytearray(z[eocd:])
    struct.pack_into("<HHII", tail, 8, count, count, len(central), start)
    return bytes(z[:start]) + central + bytes(tail)


def main():
    # vitc spec files.
    write("spec", "width-int64-max-mlp-defaulted.vit",
          spec("width = %d\ndepth = 1\nheads = 1" % I64_MAX))
    write("spec", "width-int64-min.vit", spec("width = %d\ndepth = 1\nheads = 1" % -(1 << 63)))
    write("spec", "eps-nan.vit", spec("width = 8\ndepth = 1\nheads = 1\neps = nan"))
    write("spec", "eps-inf.vit", spec("width = 8\ndepth = 1\nheads = 1\neps = -inf"))
    write("spec", "tokens-2-pow-32.vit",
          "[image]\nsize = 65536\npatch = 1\n" + spec("width = 1048576\ndepth = 1\nheads = 1"))
    write("spec", "patch-weight-overflow.vit",
          "[image]\nsize = 65536\npatch = 65536\nchannels = 4096\n" +
          spec("width = 1048576\ndepth = 1\nheads = 1"))
    write("spec", "labels-that-need-escaping.vit",
          spec("width = 8\ndepth = 1\nheads = 1",
               '[head]\nclasses = 4\nlabels = ["a \\"quoted\\" one", "back\\\\slash", '
               '"new\\nline", "tab\\tand \\u00e9"]\n'))
    write("spec", "name-that-needs-escaping.vit",
          'name = "x\\"y\\\\z\\n"\n' + spec("width = 8\ndepth = 1\nheads = 1"))
    write("spec", "invalid-utf8.vit", b"name = \"\xff\xfe\"\n[encoder]\nwidth = 8\n\xc3(\n")
    write("spec", "dotted-keys-2000-deep.vit", "a" + ".a" * 2000 + " = 1\n")
    write("spec", "key-with-newline.vit", '"a\\nb" = 1\n')
    write("spec", "heads-above-width.vit", spec("width = 8\ndepth = 1\nheads = 16"))
    # toml++ 3.3 asks whether these characters are whitespace, which is undefined behaviour in it.
    write("spec", "non-ascii-at-line-start.vit", "\u00e9 = 1\n")
    write("spec", "non-ascii-value.vit", "[encoder]\nwidth = \u0100\n")
    write("spec", "multi-line-string-escaping-non-ascii.vit", 'name = """\\\u00e9"""\n')
    write("spec", "multi-line-string-line-ending-backslash-then-non-ascii.vit",
          'name = """\\\n   \u00a7"""\n')
    write("spec", "non-ascii-in-strings-and-comments.vit",
          "# caf\u00e9\n" + spec("width = 8\ndepth = 1\nheads = 1",
                                  '[head]\nclasses = 2\nlabels = ["caf\u00e9", \'\u0133\']\n'))

    # IR text.
    x = '  %x = input {name = "x"} : '
    write("ir", "dim-2-pow-62.ir", ir(x + "f32[%d,4]\n  output %%x" % BIG))
    write("ir", "bf16-bytes-2-pow-63.ir", ir(x + "bf16[%d,2]\n  output %%x" % BIG))
    write("ir", "dim-int64-max.ir", ir(x + "f32[%d]\n  output %%x" % I64_MAX))
    write("ir", "reshape-to-overflow.ir", ir(
        x + "f32[4]\n  %%r = reshape %%x : f32[%d,%d,4]\n  output %%r" % (1 << 31, 1 << 31)))
    write("ir", "slice-start-int64-max.ir", ir(
        x + "f32[4]\n  %%s = slice %%x {axis = 0, start = %d, size = 1} : f32[1]\n  output %%s"
        % I64_MAX))
    write("ir", "slice-size-int64-max.ir", ir(
        x + "f32[4]\n  %%s = slice %%x {axis = 0, start = 1, size = %d} : f32[1]\n  output %%s"
        % I64_MAX))
    write("ir", "permute-shift-int64-min.ir", ir(
        x + "f32[4@model]\n  %%p = collective_permute %%x {mesh_axis = \"model\", shift = %d} : "
        "f32[4@model]\n  output %%p" % -(1 << 63), " mesh(data=1, model=2)"))
    write("ir", "concat-sum-overflow.ir", ir(
        x + "f32[%d]\n  %%c = concat %%x, %%x, %%x {axis = 0} : f32[4]\n  output %%c" % BIG))
    write("ir", "mesh-devices-overflow.ir", ir(x + "f32[4]\n  output %x",
                                                " mesh(data=%d, model=4)" % BIG))
    write("ir", "rotation-negative.ir", ir(x + "f32[4@model+-1]\n  output %x",
                                            " mesh(data=1, model=2)"))
    write("ir", "rotation-int64-min.ir", ir(x + "f32[4@model+%d]\n  output %%x" % -(1 << 63),
                                             " mesh(data=1, model=2)"))
    write("ir", "fill-nan.ir", ir('  %f = fill {value = nan} : f32[2]\n  output %f'))
    write("ir", "fill-minus-nan.ir", ir('  %f = fill {value = -nan} : f32[2]\n  output %f'))
    write("ir", "patch-int64-max.ir", ir(
        x + "f32[1,3,4,4]\n  %%p = patchify %%x {patch = %d} : f32[1,1,48]\n  output %%p"
        % I64_MAX))
    write("ir", "transpose-perm-int64-min.ir", ir(
        x + "f32[2,3]\n  %%t = transpose %%x {perm = [%d, 0]} : f32[3,2]\n  output %%t"
        % -(1 << 63)))
    write("ir", "mean-axis-int64-min.ir", ir(
        x + "f32[2,3]\n  %%t = mean %%x {axis = %d} : f32[3]\n  output %%t" % -(1 << 63)))
    write("ir", "all-slice-rotation-int64-min.ir", ir(
        x + "f32[4]\n  %%t = all_slice %%x {mesh_axis = \"model\", dim = 0, rotation = %d} : "
        "f32[4@model]\n  output %%t" % -(1 << 63), " mesh(data=1, model=2)"))
    write("ir", "string-escapes.ir", ir(
        '  %x = input {name = "a\\"b\\\\c\\nd\\te"} : f32[2]\n  output %x'))
    write("ir", "invalid-utf8.ir", b"module @m\xff {\n  %\xc3( = input {name = \"\xfe\"} : f32[2]\n}\n")

    # Hugging Face config.json.
    write("hf_config", "number-overflow-1e400.json", '{"layer_norm_eps": 1e400}')
    write("hf_config", "hidden-size-uint64-max.json", '{"hidden_size": 18446744073709551615}')
    write("hf_config", "hidden-size-int64-min.json", '{"hidden_size": -9223372036854775808}')
    write("hf_config", "image-size-pair-uneven.json", '{"image_size": [224, 160]}')
    write("hf_config", "image-size-pair-of-strings.json", '{"image_size": ["a", "a"]}')
    write("hf_config", "model-type-object.json", '{"model_type": {"a": [1, {"b": null}]}}')
    write("hf_config", "id2label-sparse.json", json.dumps({
        "architectures": ["ViTForImageClassification"], "hidden_size": 8, "num_attention_heads": 1,
        "num_hidden_layers": 1, "id2label": {"0": "a", "7": "b"}}))
    write("hf_config", "id2label-negative-and-spaces.json", json.dumps({
        "architectures": ["ViTForImageClassification"],
        "id2label": {"-1": "a", " 1": "b", "1 ": "c"}}))
    write("hf_config", "id2label-duplicate-index.json",
          '{"architectures": ["ViTForImageClassification"], "hidden_size": 8, '
          '"num_attention_heads": 1, "num_hidden_layers": 1, "id2label": {"1": "a", "01": "b"}}')
    write("hf_config", "labels-that-need-escaping.json", json.dumps({
        "architectures": ["ViTForImageClassification"], "hidden_size": 8, "num_attention_heads": 1,
        "num_hidden_layers": 1,
        "id2label": {"0": 'a "quoted" one', "1": "back\\slash", "2": "new\nline", "3": "\u00e9\t"}}))
    write("hf_config", "num-labels-huge.json", json.dumps({
        "architectures": ["ViTForImageClassification"], "num_labels": I64_MAX}))
    write("hf_config", "tokens-2-pow-32.json", json.dumps({
        "image_size": 65536, "patch_size": 1, "hidden_size": 1 << 20, "num_attention_heads": 1,
        "num_hidden_layers": 1, "intermediate_size": 1}))
    write("hf_config", "invalid-utf8.json", b'{"hidden_act": "\xff\xfe"}')

    # safetensors.
    write("safetensors", "header-length-uint64-max.safetensors", b"\xff" * 8 + b"{}")
    write("safetensors", "header-length-past-end.safetensors", struct.pack("<Q", 100) + b"{}")
    write("safetensors", "shape-numel-overflow.safetensors", safetensors(
        {"t": {"dtype": "F32", "shape": [BIG, BIG], "data_offsets": [0, 0]}}))
    write("safetensors", "shape-bytes-overflow.safetensors", safetensors(
        {"t": {"dtype": "F64", "shape": [BIG], "data_offsets": [0, 0]}}))
    write("safetensors", "zero-dim-with-huge-others.safetensors", safetensors(
        {"t": {"dtype": "U8", "shape": [0, I64_MAX, I64_MAX], "data_offsets": [0, 0]}}))
    write("safetensors", "offsets-past-end.safetensors", safetensors(
        {"t": {"dtype": "F32", "shape": [1], "data_offsets": [(1 << 64) - 4, (1 << 64) - 1]}},
        b"\0" * 4))
    write("safetensors", "offsets-reversed.safetensors", safetensors(
        {"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4))
    write("safetensors", "overlapping.safetensors", safetensors(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12))
    write("safetensors", "f32-unaligned.safetensors", safetensors(
        b'{"t": {"dtype": "F32", "shape": [2], "data_offsets": [1, 9]}}', b"\0" * 9))
    write("safetensors", "number-overflow-1e400.safetensors", safetensors(
        b'{"t": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}}', b"\0" * 4))
    write("safetensors", "negative-dim.safetensors", safetensors(
        {"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}))
    write("safetensors", "duplicate-names.safetensors", safetensors(
        b'{"t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, '
        b'"t": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', b"\0\0"))
    write("safetensors", "metadata-not-strings.safetensors", safetensors(
        {"__metadata__": {"a": [1, 2]}}))
    write("safetensors", "invalid-utf8-name.safetensors", safetensors(
        b'{"\xff\xfe": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}', b"\0"))
    write("safetensors", "u64-many.safetensors", safetensors(
        {"t": {"dtype": "U64", "shape": [512], "data_offsets": [0, 4096]}}, b"\xff" * 4096))

    # .npy.
    write("npy", "fortran-zero-dim-huge-strides.npy", npy_f4([0, 1 << 40, 1 << 40], fortran=True))
    write("npy", "shape-2-pow-62-tiny-data.npy", npy_f4([BIG], b"\0" * 4))
    write("npy", "shape-bytes-overflow.npy", npy_f4([BIG, 8]))
    write("npy", "shape-negative.npy", npy_f4([-1]))
    write("npy", "shape-int64-min.npy", npy_f4([-(1 << 63)]))
    write("npy", "shape-integer-too-big.npy", npy_f4([1 << 64]))
    write("npy", "nesting-40-deep.npy", npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': %s}" % ("(" * 40 + ")" * 40)))
    write("npy", "header-length-uint32-max.npy", b"\x93NUMPY\x02\x00\xff\xff\xff\xff{}")
    write("npy", "header-not-a-dict.npy", npy("[1, 2, 3]"))
    write("npy", "descr-structured.npy",
          npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", b"\0" * 4))
    write("npy", "descr-f9.npy", npy("{'descr': '<f9', 'fortran_order': False, 'shape': (1,)}"))
    write("npy", "unterminated-string.npy", npy("{'descr': '<f4"))
    write("npy", "fortran-3d.npy", npy_f4([2, 3, 2], bytes(range(48)), fortran=True))

    # .npz.
    z = zip_of([("a.npy", npy_f4([2], b"\0" * 8))])
    bomb = bytearray(z)
    struct.pack_into("<I", bomb, central_headers(bomb)[0] + 24, 0xFFFFFFFE)
    write("npz", "bomb-claims-4-gib.npz", bytes(bomb))
    big = zip_of([("a.npy", npy_f4([1 << 18], bytes(4 << 18)))])
    under = bytearray(big)
    struct.pack_into("<I", under, central_headers(under)[0] + 24, 200)
    write("npz", "understated-size-inflates-more.npz", bytes(under))
    write("npz", "overlapping-members.npz", overlapping_members(64))
    crc = bytearray(z)
    struct.pack_into("<I", crc, central_headers(crc)[0] + 16, 0x12345678)
    write("npz", "crc-mismatch.npz", bytes(crc))
    write("npz", "end-record-only.npz", b"PK\x05\x06" + b"\0" * 18)
    write("npz", "duplicate-names.npz",
          zip_of([("a.npy", npy_f4([1], b"\0" * 4)), ("a.npy", npy_f4([1], b"\0" * 4))]))
    write("npz", "truncated.npz", bytes(z[:len(z) - 30]))
    write("npz", "member-not-npy.npz", zip_of([("a.npy", b"PK\x03\x04 not an array")]))
    store = zip_of([("a.npy", npy_f4([2], b"\0" * 8))], zipfile.ZIP_STORED)
    stored_lie = bytearray(store)
    struct.pack_into("<I", stored_lie, central_headers(stored_lie)[0] + 24, 1000)
    write("npz", "stored-size-lie.npz", bytes(stored_lie))

    # Layout and target JSON.
    write("layout", "mesh-devices-overflow.json", json.dumps({"mesh": {"data": BIG, "model": 4}}))
    write("layout", "mesh-axis-names-odd.json", json.dumps({"mesh": {"a,b": 2, "": 1, "x=1": 3}}))
    write("layout", "number-overflow-1e400.json", '{"params_over_data_min_bytes": 1e400}')
    write("layout", "microbatches-uint64-max.json", '{"microbatches": 18446744073709551615}')
    target = {"peak_flops": 1e12, "memory_bandwidth": 1e11, "memory_bytes": 1e30}
    write("layout", "target-memory-bytes-1e30.json", json.dumps(target))
    write("layout", "target-cores-1e30.json", json.dumps(dict(target, memory_bytes=1,
                                                              cores_per_host=1e30)))
    write("layout", "target-name-not-string.json", json.dumps(dict(target, memory_bytes=1,
                                                                   name=[1], comment={})))
    write("layout", "target-latency-string.json", json.dumps(dict(
        target, memory_bytes=1, links={"*": {"gbps": 1, "latency_us": "slow"}})))
    write("layout", "target-latency-negative.json", json.dumps(dict(
        target, memory_bytes=1, links={"model": {"gbps": 1, "latency_us": -5}})))
    write("layout", "target-dtype-nan-like.json", json.dumps(dict(
        target, memory_bytes=1, dtype_bytes=4.000000001)))
    write("layout", "invalid-utf8.json", b'{"data_axis": "\xff\xfe"}')


if __name__ == "__main__":
    main()
