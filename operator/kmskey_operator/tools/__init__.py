"""Command-line tools that look at KMS through the operator's own core, and never write to it.

`plan` previews what the operator would do for a manifest; `import` prints a manifest that adopts an
existing key. Both build a `ReadOnlyGateway`, so a KMS write is impossible by construction.
"""
