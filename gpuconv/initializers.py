"""STUB."""
def get(identifier):
    return identifier
