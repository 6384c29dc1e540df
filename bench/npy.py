"""Writing image batches as .npy without numpy, for the benchmark scripts."""
import struct


def write_images(path, batch, size=224):
    """A float32 NCHW batch of deterministic pixel values in [-0.5, 0.5)."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, 3, %d, %d), }" % (batch, size, size)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    count = batch * 3 * size * size
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%df" % count, *[((i * 7919) % 1000) / 1000.0 - 0.5 for i in range(count)]))
