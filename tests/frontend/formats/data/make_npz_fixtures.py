#!/usr/bin/env python3
"""Writes savez.npz and savez_compressed.npz the way numpy's savez and savez_compressed do.

numpy is not needed (nor available on the build machines): the .npy members are laid out as
numpy.lib.format.write_array lays out version 1.0 files, and the archive is written exactly as
numpy.lib.npyio._savez writes it, with zipfile, allowZip64=True and force_zip64=True per member.
Run from this folder; the tests in ../npz_test.cpp expect the arrays below.
"""
import struct
import zipfile


def npy(descr, fortran_order, shape, payload):
    """A version 1.0 .npy image, padded like numpy's _wrap_header (data at a multiple of 64)."""
    shape_repr = "(%s)" % (", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else ""))
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran_order else "False", shape_repr)
    hlen = len(header) + 1
    padlen = 64 - ((6 + 2 + 2 + hlen) % 64)
    header = header + " " * padlen + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + payload


ARRAYS = {
    # A row-major float32 matrix named like a big_vision parameter.
    "embedding/kernel": npy("<f4", False, (2, 3), struct.pack("<6f", 0.5, 1, -2, 3, 4.25, -0.0)),
    # float64, converted on load.
    "bias": npy("<f8", False, (3,), struct.pack("<3d", 1.5, -2, 1e-3)),
    # A 0-d int64.
    "count": npy("<i8", False, (), struct.pack("<q", 42)),
    # The matrix [[1, 2, 3], [4, 5, 6]] stored column-major.
    "fortran": npy("<f4", True, (2, 3), struct.pack("<6f", 1, 4, 2, 5, 3, 6)),
}


def savez(path, compression):
    with zipfile.ZipFile(path, mode="w", compression=compression, allowZip64=True) as zipf:
        for key, image in ARRAYS.items():
            with zipf.open(key + ".npy", "w", force_zip64=True) as fid:
                fid.write(image)


if __name__ == "__main__":
    savez("savez.npz", zipfile.ZIP_STORED)
    savez("savez_compressed.npz", zipfile.ZIP_DEFLATED)
