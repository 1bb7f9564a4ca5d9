"""Base model, processor, prompts, SFT examples, LoRA and lineage."""
