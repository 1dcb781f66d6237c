"""The committed JSON Schema of results.json: `python -m evalsuite.schema` prints it (tests check it is current)."""
