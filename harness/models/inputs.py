"""How a model is fed: the task's image preprocessing and its prompt through the chat template.

Shared by generation and training, so a model is trained on exactly the inputs it is evaluated on.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from harness.specs.task import ImagePreprocessing


def preprocess_image(image: Image.Image, spec: ImagePreprocessing) -> Image.Image:
    resample = {
        "bicubic": Image.Resampling.BICUBIC,
        "bilinear": Image.Resampling.BILINEAR,
        "lanczos": Image.Resampling.LANCZOS,
    }[spec.resample]
    image = image.convert(spec.mode)
    if image.size != tuple(spec.size):
        image = image.resize(tuple(spec.size), resample=resample)
    return image


def build_prompt(processor: Any, prompt: str) -> tuple[str, bool]:
    """Apply the model's chat template to the task's one prompt.

    Returns the text and whether the tokenizer should add its special tokens: only when the
    template did not already write the BOS (Llama-3-style templates do; Llama-2's do not).
    """
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    bos = getattr(processor.tokenizer, "bos_token", None)
    return text, bool(bos) and not text.startswith(bos)
