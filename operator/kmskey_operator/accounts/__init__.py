"""Provider configs: which Alibaba Cloud account, credentials and rate limiter serve a KmsKey.

`refs` and `config` are typed views of `spec.providerConfigRef` and of KmsProviderConfig /
ClusterKmsProviderConfig bodies; `selection` is the pure rule from a KmsKey to its config (and the
admission check of the reference); `registry` is the runtime home that turns a selection into credentials,
an account ID and the (account, region) gateway the reconciler calls; `waiting` records which KmsKeys wait
on a broken or missing config, so that the check finding it usable reconciles them at once.
"""
