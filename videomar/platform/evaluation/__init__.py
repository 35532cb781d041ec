"""Evaluation: quality metrics for videos and the ``kind: eval`` job.

Modules: ``metrics`` (PSNR, SSIM, copy-last baseline), ``frechet`` (Fréchet distance),
``features`` (pluggable video feature extractors for FVD), ``digits`` (moving-digits classifier,
subject consistency, dynamics), ``job`` (the eval job and ``evaluate_export``), ``report`` (JSON,
the per-stage plot, the quality summary), ``sheet`` (the contact sheet). Import the module you
need; this package imports nothing heavy.
"""
