"""How fast the nets train and infer on a device: `profile` (images/s, memory, fraction of peak
FLOP/s, per configuration), `packing` (k trials sharing one device against one alone), `speedup`
(epoch-level speedups of the fast paths), and `gpu_check` with `gpu_runs` (every CUDA path on one
GPU in minutes). `cli` holds their commands: profile, packing, gpu-check.
"""
