#!/usr/bin/python3
"""Token rows of a tessera dataset split, in stream order, as hf_loss.py's TOKENS_JSON.

Usage: dataset_rows.py DATASET_DIR SPLIT SEQ_LEN EXTRA COUNT
Prints {"tokens": [row_0, ..., row_{COUNT-1}], "samples_in_split": S} with row s = stream tokens
[s*SEQ_LEN, s*SEQ_LEN + SEQ_LEN + 1 + EXTRA), where the stream is the split's shards (manifest
order) concatenated: data/loader.h's samples 0 .. COUNT-1, which is what an unshuffled loader
(validation, `tessera eval`) reads first. Reads the on-disk format of data/README.md
(manifest.yaml, HDF5 shards with a 1-D `tokens` dataset) with PyYAML and h5py only, no tessera
code; it checks each shard's token count against the manifest and that COUNT samples exist.
"""

import json
import os
import sys

import h5py
import numpy as np
import yaml


def split_stream(dataset_dir, split):
    with open(os.path.join(dataset_dir, "manifest.yaml")) as f:
        manifest = yaml.safe_load(f)
    parts = []
    for shard in manifest["splits"][split]["shards"]:
        with h5py.File(os.path.join(dataset_dir, shard["file"]), "r") as h5:
            tokens = np.asarray(h5["tokens"][...], dtype=np.int64)
        if tokens.ndim != 1 or len(tokens) != int(shard["tokens"]):
            sys.exit(f"dataset_rows: {shard['file']}: {tokens.shape} tokens, manifest says "
                     f"{shard['tokens']}")
        parts.append(tokens)
    return np.concatenate(parts), len(parts)


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    dataset_dir, split = sys.argv[1], sys.argv[2]
    seq_len, extra, count = (int(a) for a in sys.argv[3:6])
    stream, _ = split_stream(dataset_dir, split)
    samples = (len(stream) - 1 - extra) // seq_len  # data/loader.h's S
    if count > samples:
        sys.exit(f"dataset_rows: {split} has {samples} samples of {seq_len}+1+{extra} tokens, "
                 f"{count} asked for")
    width = seq_len + 1 + extra
    rows = [stream[s * seq_len:s * seq_len + width].tolist() for s in range(count)]
    print(json.dumps({"tokens": rows, "samples_in_split": samples}))


if __name__ == "__main__":
    main()
