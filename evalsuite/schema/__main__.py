"""Print a results file's JSON Schema: `python -m evalsuite.schema [results|contamination]`."""

import json
import sys

from evalsuite.results import ContaminationResults, SuiteResults

kind = sys.argv[1] if len(sys.argv) > 1 else "results"
schema = (ContaminationResults if kind == "contamination" else SuiteResults).model_json_schema()
print(json.dumps(schema, indent=2))
