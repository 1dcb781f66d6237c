"""Print a results file's JSON Schema: `python -m evalsuite.schema [results|contamination]`."""

import json
import sys

from evalsuite.contamination import ContaminationResults
from evalsuite.results import results_json_schema

kind = sys.argv[1] if len(sys.argv) > 1 else "results"
schema = ContaminationResults.model_json_schema() if kind == "contamination" else results_json_schema()
print(json.dumps(schema, indent=2))
