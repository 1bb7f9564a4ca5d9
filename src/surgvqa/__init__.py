"""surgvqa: stage-wise fine-tuning and honest evaluation of vision-language models on Kvasir-VQA."""

__version__ = "0.1.0"
