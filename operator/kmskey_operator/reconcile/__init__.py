"""observe -> diff -> plan -> apply: the reconciler's core, with no kopf in it.

`diff` and `plan` are pure; `observe` and `apply` are the only steps that call KMS (through
`kms.gateway`). `reconciler` strings them together and turns the result into status, conditions and
events that the kopf layer writes.
"""
