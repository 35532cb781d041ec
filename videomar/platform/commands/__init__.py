"""CLI verbs, one module per group; see videomar.platform.cli."""
