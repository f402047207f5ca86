"""How fast a device is, and how long a callable takes on it: the bench's clock (CUDA events on
GPU, no host sync inside the timed region), the measured matmul rate, peak and allocated memory,
and each card's dense bf16 peak from its data sheet (the standard MFU's denominator)."""

from __future__ import annotations

import platform
import time

import torch

# dense (no sparsity) bf16 tensor-core peaks from the data sheets, TFLOP/s: the standard MFU's
# denominator (torchtitan's get_peak_flops); first match on the device's name
SPEC_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))


def spec_peak(device_name: str) -> float | None:
    """The card's dense bf16 FLOP/s from its data sheet, or None (a CPU, an unknown card)."""
    return next((t * 1e12 for key, t in SPEC_PEAK_TFLOPS if key in device_name), None)


class Timer:
    """Wall time of a callable: CUDA events on GPU (no host sync inside the timed region)."""

    def __init__(self, dev):
        self.cuda = dev.type == "cuda"

    def __call__(self, fn, warmup: int, iters: int) -> float:
        for _ in range(warmup):
            fn()
        if self.cuda:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000 / iters
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t) / iters


def matmul_peak(dev) -> float:
    """Measured dense matmul FLOP/s (bf16 on GPU, float32 on CPU): the MFU denominator."""
    n, dtype = (8192, torch.bfloat16) if dev.type == "cuda" else (1024, torch.float32)
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    return 2 * n ** 3 / Timer(dev)(lambda: a @ b, 3, 10)


def peak_memory_gib(dev, fn) -> float | None:
    if dev.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2 ** 30


def allocated_bytes(dev) -> int:
    return torch.cuda.memory_allocated() if dev.type == "cuda" else 0


def device_name(dev) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine()
