"""Job specs: the typed, validated schema of each kind of job, one module per kind.

These modules describe what a spec may say and nothing else; they import no job code. Loading a
YAML file into the spec of its kind, and running it, is videomar/platform/jobs/.
"""
