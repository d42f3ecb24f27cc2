#!/usr/bin/python3
"""Smallest routing margin of hf_loss.py's model on a batch: a diagnostic for loss mismatches.

Usage: hf_routing_margin.py MODEL_DIR TOKENS_JSON
Runs hf_loss.py's computation and prints the smallest gap, over every top-k choice it makes (the
expert groups kept, the experts chosen), between the k-th and the (k+1)-th candidate score. When
it is below ~1e-6, tessera (fp32) and hf_loss.py (float64) may route a token differently, and a
loss mismatch on that batch says nothing about the export.
"""

import os
import sys

import torch

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_loss  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    gaps = []
    topk = torch.Tensor.topk

    def recording_topk(self, k, dim=-1, *args, **kwargs):
        if self.shape[dim] > k:
            values = topk(self, k + 1, dim, *args, **kwargs).values.select(dim, -1)
            kth = topk(self, k, dim, *args, **kwargs).values.select(dim, -1)
            gap = kth - values
            gap = gap[torch.isfinite(gap)]
            if gap.numel():
                gaps.append(gap.min().item())
        return topk(self, k, dim, *args, **kwargs)

    torch.Tensor.topk = recording_topk
    try:
        c = hf_loss.read_config(sys.argv[1])
        tokens = hf_loss.read_tokens(sys.argv[2], c)
        with torch.no_grad():
            hf_loss.DeepSeekV3(c, hf_loss.Checkpoint(sys.argv[1])).losses(tokens)
    finally:
        torch.Tensor.topk = topk
    print(f"{min(gaps):.3e}" if gaps else "none (no top-k choice)")


if __name__ == "__main__":
    main()
