"""Write a randomly initialised Llama model folder that `evalsuite run` can load, for machines no real
weights can reach (a lent GPU machine: only the repo and a few carried folders travel there, and
SmolLM2's weights are too large to carry). Scores of such a model mean nothing; what it is for is
running the real code path (CUDA, dtypes, --batch-size auto, both backends) and checking that the
backends agree.

    python bench/random_model.py OUT_DIR --tokenizer TOKENIZER_FOLDER [--shape smollm2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

SHAPES = {
    # SmolLM2-135M's architecture
    "smollm2": {
        "num_hidden_layers": 30,
        "hidden_size": 576,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "intermediate_size": 1536,
        "max_position_embeddings": 8192,
        "rope_theta": 100000.0,
        "tie_word_embeddings": True,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--tokenizer", required=True, help="a Hugging Face tokenizer folder")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="smollm2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    config = LlamaConfig(
        **SHAPES[args.shape],
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(args.out_dir)
    tokenizer.save_pretrained(args.out_dir)
    print(f"{args.out_dir}: random {args.shape}-shaped Llama, {model.num_parameters() / 1e6:.0f}M parameters")


if __name__ == "__main__":
    main()
