"""The file names inside videomar's exports, defined once: a stage export and a VAE export share
the weights and config names, so one loader can tell them apart by the config's content."""

WEIGHTS_FILE = "model.safetensors"  # safetensors weights (a stage export's EMA; a VAE's weights)
CONFIG_FILE = "config.json"  # what to build, and how the weights were made
SPEC_FILE = "spec.yaml"  # the resolved spec of the stage that wrote a stage export
VAE_DIR = "vae"  # a stage export's copy of its VAE export, so the export is self-contained
COMPLETE_MARKER = "COMPLETE"  # written last: an export without it is refused
