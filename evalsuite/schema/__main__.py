import json

from evalsuite.results import results_json_schema

print(json.dumps(results_json_schema(), indent=2))
