#!/usr/bin/python3
# Compare two HDF5 files dataset by dataset, bit for bit (h5diff does not compare all objects by
# default). Exit 0 if every dataset under the given groups is identical, 1 otherwise.
import sys

import h5py
import numpy as np


def datasets(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
    return out


def main():
    a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
    da, db = datasets(a), datasets(b)
    bad = sorted(set(da) ^ set(db))
    for name in sorted(set(da) & set(db)):
        x, y = da[name][()], db[name][()]
        if x.shape != y.shape or x.dtype != y.dtype or x.tobytes() != y.tobytes():
            bad.append(name)
    for name in bad:
        print("differs:", name)
    print(f"{len(set(da) | set(db))} datasets, {len(bad)} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
