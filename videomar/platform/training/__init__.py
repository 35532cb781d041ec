"""Training on Ray Train: VideoMAR stages (DeepSpeed ZeRO) and the video VAE, on one core.

Modules: core (the worker group, seeds and step hooks both trainers share), config (spec ->
resolved stage plan, preflight checks), data (each rank's shuffled batches), deepspeed_config,
engine, schedule, ema, checkpoint (what a checkpoint holds beyond DeepSpeed's shards), loop (the
per-worker train function), trainer (one stage, driver side), samples (sample videos from the EMA
weights), vae (the VAE trainer).
"""
