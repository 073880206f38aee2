"""The machine a number is measured on, and what it does fast.

- `identity`: `identify(device) -> Hardware` (CPU model, cores, capability, native bf16; GPU name,
  memory, driver, TF32) and the columns every table records of it;
- `precision`: `fast_precision` / `resolve_precision`: bf16 only where it is native;
- `peak`: `peak_tflops`: the datasheet's peak for known GPUs, a cached probe for a CPU;
- `cache`: this machine's cache folder.

The names are re-exported here, and callers look them up here (`from benchmark import hardware;
hardware.identify(...)`), so that a test fakes a machine by replacing `benchmark.hardware.identify`.
"""

from benchmark.hardware.cache import default_cache_dir
from benchmark.hardware.identity import (IDENTITY_COLUMNS, KERNEL_ENV, RUN_HARDWARE_COLUMNS, Hardware, cores,
                                         cpu_flags, cpu_model, identify, native_cpu_bf16, onednn_max_isa,
                                         with_threads)
from benchmark.hardware.peak import (GPU_PEAK_TFLOPS, cache_key, cached_cpu_peak, peak_tflops, probe_and_cache,
                                     probe_cpu_peak)
from benchmark.hardware.precision import PRECISIONS, PrecisionError, fast_precision, resolve_precision

__all__ = ["GPU_PEAK_TFLOPS", "IDENTITY_COLUMNS", "KERNEL_ENV", "PRECISIONS", "RUN_HARDWARE_COLUMNS", "Hardware",
           "PrecisionError", "cache_key", "cached_cpu_peak", "cores", "cpu_flags", "cpu_model", "default_cache_dir",
           "fast_precision", "identify", "native_cpu_bf16", "onednn_max_isa", "peak_tflops", "probe_and_cache",
           "probe_cpu_peak", "resolve_precision", "with_threads"]
