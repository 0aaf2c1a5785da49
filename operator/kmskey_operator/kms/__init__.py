"""The operator's only door to KMS: our own types in and out, the SDK hidden behind `gateway.py`."""
