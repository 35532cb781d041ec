"""Training VideoMAR on Ray Train + DeepSpeed ZeRO: one curriculum stage per ``train`` spec.

Modules: config (spec -> resolved stage plan, preflight checks), deepspeed_config, schedule, ema,
checkpoint (what a checkpoint holds beyond DeepSpeed's shards), export (the stage export format
and ``load_export``), tracking (MLflow, rank 0 only), loop (the per-worker train function),
trainer (the TorchTrainer wiring), samples (sample videos from the EMA weights), faults (a test
hook that kills a rank once).
"""
