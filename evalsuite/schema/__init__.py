"""The committed JSON Schemas of evalsuite's files (results.v<N>.json, contamination.v<N>.json), generated from
evalsuite.results' models: `python -m evalsuite.schema [results|contamination]` prints them, and a test fails
while a committed file is stale."""
