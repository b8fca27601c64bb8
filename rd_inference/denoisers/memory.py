"""``max_batch="auto"``: paths per model call sized from free memory.

On CUDA one path's model call is measured (peak memory over the baseline, guidance included) and the
chunk is as many paths as fit in 80% of the free memory, at most 64. On CPU it is 64: batching amortises
the per-call overhead (a chunk of 64 was 1.10-1.27x faster than chunks of 8 at N=32 on this project's
CPU), and host memory is rarely the limit at the sizes a CPU runs. A chunk that still does not fit is
halved by the out-of-memory backoff in :class:`~rd_inference.denoisers.base.ChunkedDenoiser`.
"""

from __future__ import annotations

import torch

from ..ledger import Ledger

AUTO_CAP = 64
FREE_SHARE = 0.8


def batch_from_memory(free_bytes: int, per_path_bytes: int, cap: int = AUTO_CAP) -> int:
    return int(max(1, min(cap, FREE_SHARE * free_bytes // max(per_path_bytes, 1))))


@torch.inference_mode()
def auto_max_batch(den) -> int:
    device = torch.device(den.device)
    if device.type != "cuda":
        return AUTO_CAP
    saved, den.ledger = den.ledger, Ledger()  # the probe is not part of the run's spending
    try:
        den.cond  # noqa: B018 (the encoded prompt stays resident: part of the baseline, not of a path)
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        den.predict_x0(den.initial_noise([torch.Generator("cpu").manual_seed(0)]), 0)
        torch.cuda.synchronize(device)
        per_path = torch.cuda.max_memory_allocated(device) - base
    finally:
        den.ledger = saved
    free, _ = torch.cuda.mem_get_info(device)
    return batch_from_memory(free, per_path)
