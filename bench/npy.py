"""Writing image batches as .npy, and synthetic training sets as .npz, without numpy, for the
benchmark scripts."""
import array
import random
import struct
import sys
import zipfile


def npy_header(descr, shape):
    """The .npy (version 1.0) header of a C-order array of numpy dtype `descr` and `shape`."""
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()


def _little_endian(values, typecode):
    data = array.array(typecode, values)
    if sys.byteorder != "little":
        data.byteswap()
    return data.tobytes()


def _pixels(count):
    """count float32 pixel values in [-0.5, 0.5), deterministic, little-endian bytes."""
    return _little_endian((((i * 7919) % 1000) / 1000.0 - 0.5 for i in range(count)), "f")


def write_images(path, batch, size=224, channels=3):
    """A float32 NCHW batch of deterministic pixel values in [-0.5, 0.5)."""
    shape = (batch, channels, size, size)
    with open(path, "wb") as f:
        f.write(npy_header("<f4", shape))
        f.write(_pixels(batch * channels * size * size))


def write_training_set(path, count, channels, size, classes, seed=0):
    """A .npz training set as `vitc train --data` reads it: `images` float32 [count, channels,
    size, size] (the pixels of write_images) and `labels` int64 [count], random in [0, classes)."""
    rng = random.Random(seed)
    labels = _little_endian((rng.randrange(classes) for _ in range(count)), "q")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("images.npy", npy_header("<f4", (count, channels, size, size)) +
                   _pixels(count * channels * size * size))
        z.writestr("labels.npy", npy_header("<i8", (count,)) + labels)
