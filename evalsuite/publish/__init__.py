"""Publishing: model cards (the README's model-index results and sections, updated in place and losslessly),
tables and leaderboards, their renderers (jinja2 templates in templates/), and uploads to the Hub.

Reads results files (evalsuite.results) and the suite; never the run pipelines, the engine, torch, lm-eval or
datasets, so rendering a card or a leaderboard loads no model library. huggingface_hub is imported where a
command uses it (model-index, pushing), pandas for CSV only; so this package imports none of its modules
(the card update's library entry point is evalsuite.publish.card_update, also at evalsuite's root).
"""
