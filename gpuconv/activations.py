"""STUB (replaced by the layers-core work)."""
def get(identifier):
    return identifier
