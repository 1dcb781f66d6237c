"""The contamination test model cards report beside their H6 numbers (upstage/SOLAR-10.7B-Instruct-v1.0's
"result < 0.1, %: 0.06"), as the public repository swj0419/detect-pretrain-code-contamination computes it:

- per benchmark, the eval split's items as texts x = question + " " + correct answer, shuffled with
  `random.seed(0)`, the first 100 kept;
- L(x): the TARGET model's mean per-token negative log-likelihood of x;
- the first ceil(0.4 x words) words of x are a prefix from which the REFERENCE model samples 100
  continuations, the neighbours z; r(x) = the share of neighbours with L(z) < L(x) (scored by the target);
- reported: the share of items with r(x) < 0.1.

A value near 1 says the target finds the real benchmark text likelier than nearly all its paraphrase-like
neighbours, a sign (not a proof: GSM8K scores high for many clean models) that it was trained on it.

The pure parts are here: the items (texts, selection) and the statistic. The models run in
evalsuite.engine.neighbours (sampling and scoring), the check's stages in evalsuite.run.contamination, and its
files are evalsuite.results.contamination's.
"""
from evalsuite.contamination.items import ITEM_TEXTS, ORIGINAL_TASKS, Item, Selection, select_items
from evalsuite.contamination.statistic import format_share, neighbour_rank, prefix_of, reported_share

__all__ = [
    "ITEM_TEXTS",
    "ORIGINAL_TASKS",
    "Item",
    "Selection",
    "format_share",
    "neighbour_rank",
    "prefix_of",
    "reported_share",
    "select_items",
]
