"""What differs per architecture: prompt template, special tokens, processor options, module paths.

Everything else in the harness is architecture-agnostic and talks to models through
`AutoModelForImageTextToText` / `AutoProcessor`. Each family also knows how to build its tiny
random-weight twin (see `harness.models.twins`), so tests exercise the same loading path a Hub
id takes.

Twin sizes: hidden width 64 in both towers, attention heads of size 32 (two per layer; vLLM's CPU
attention kernels take no narrower heads), FFN width 128. Grouped-query attention where the real
model has it (Qwen2-VL, Llama-3.2: 2 query heads per KV head), plain multi-head in LLaVA's Vicuna.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.registry import FAMILIES as _FAMILIES
from harness.registry import Registry

TokenIds = Mapping[str, int]
ImageSize = tuple[int, int]


@dataclass(frozen=True)
class Family:
    name: str
    model_type: str  # `config.model_type` of the real checkpoints
    hub_example: str
    language_model: str  # module path of the decoder stack (techniques target it)
    vision_modules: tuple[str, ...]  # module paths kept out of quantization / LoRA
    # Twin recipe: special tokens (first ones first), which are bos/eos/pad, and a chat template
    # following the real checkpoint's own.
    special_tokens: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str
    chat_template: str
    tiny_config: Callable[[TokenIds, int], dict[str, Any]]  # (token ids, vocab size) -> config
    tiny_processor: Callable[[Any, str], Any]  # (tokenizer, chat template) -> processor
    processor_kwargs: Callable[[ImageSize], dict[str, Any]] = field(default=lambda size: {})
    extra_eos: tuple[str, ...] = ()  # further end tokens the real generation config lists
    # Module renames of transformers 4.52+ (checkpoint key regex -> replacement), used to migrate
    # adapters saved before them, which would otherwise load as a silent no-op.
    legacy_renames: tuple[tuple[str, str], ...] = ()


FAMILIES: Registry[Family] = _FAMILIES  # filled by this module (harness.registry loads it)


def family_for_model_type(model_type: str) -> Family:
    for name in FAMILIES:
        fam = FAMILIES.get(name)
        if fam.model_type == model_type:
            return fam
    raise ValueError(
        f"model type {model_type!r} has no family; known: "
        + ", ".join(FAMILIES.get(n).model_type for n in FAMILIES)
    )


# ----------------------------------------------------------------------------------- Qwen2-VL

_QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _qwen_config(ids: TokenIds, vocab: int) -> dict[str, Any]:
    return {
        "model_type": "qwen2_vl",
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        # Untied, as in Qwen2-VL-7B (2B ties them): a random model whose output layer is its
        # input embedding keeps repeating its last token (that token's own logit dominates).
        "tie_word_embeddings": False,
        "text_config": {
            "vocab_size": vocab,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,  # grouped-query attention, like the real 12:2
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": [4, 6, 6],  # sums to head_dim / 2, in the real 16:24:24 ratio
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        "vision_config": {
            "depth": 2,
            "embed_dim": 64,
            "hidden_size": 64,  # projector output = text hidden size
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
    }


def _qwen_processor(tokenizer: Any, template: str) -> Any:
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    return Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=template,
    )


def _qwen_kwargs(size: ImageSize) -> dict[str, Any]:
    # The default allows up to 16,384 image tokens per picture; pin the task's pixel budget so a
    # 224x224 image stays 224x224 (64 tokens after the 2x2 merge).
    pixels = size[0] * size[1]
    return {"images_kwargs": {"size": {"shortest_edge": pixels, "longest_edge": pixels}}}


FAMILIES.add(
    "qwen2_vl",
    Family(
        name="qwen2_vl",
        model_type="qwen2_vl",
        hub_example="Qwen/Qwen2-VL-2B-Instruct",
        language_model="model.language_model",
        vision_modules=("model.visual",),
        special_tokens=(
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|image_pad|>",
            "<|video_pad|>",
        ),
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        extra_eos=("<|endoftext|>",),
        chat_template=_QWEN_TEMPLATE,
        tiny_config=_qwen_config,
        tiny_processor=_qwen_processor,
        processor_kwargs=_qwen_kwargs,
        legacy_renames=(
            (r"^model\.(?!language_model\.|visual\.)", "model.language_model."),
            (r"^visual\.", "model.visual."),
        ),
    ),
)

# ---------------------------------------------------------------------- Llama 3.2 Vision (Mllama)

_MLLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|image|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def _mllama_config(ids: TokenIds, vocab: int) -> dict[str, Any]:
    return {
        "model_type": "mllama",
        "architectures": ["MllamaForConditionalGeneration"],
        "image_token_index": ids["<|image|>"],
        "vision_config": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_global_layers": 1,
            "attention_heads": 2,
            "image_size": 224,
            "patch_size": 14,
            "max_num_tiles": 4,
            "intermediate_layers_indices": [0],
            "vision_output_dim": 128,  # hidden * (1 + number of intermediate layers)
        },
        "text_config": {
            "vocab_size": vocab,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 3,
            "cross_attention_layers": [1],  # the real 40-layer stack has 8 of them
            "num_attention_heads": 2,
            "num_key_value_heads": 1,  # the real 32:8
            "max_position_embeddings": 131072,
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            "bos_token_id": ids["<|begin_of_text|>"],
            "eos_token_id": ids["<|eot_id|>"],
            "pad_token_id": ids["<|finetune_right_pad_id|>"],
        },
    }


def _mllama_processor(tokenizer: Any, template: str) -> Any:
    from transformers import MllamaImageProcessor, MllamaProcessor

    image_processor = MllamaImageProcessor(size={"height": 224, "width": 224}, max_image_tiles=4)
    return MllamaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=template
    )


FAMILIES.add(
    "mllama",
    Family(
        name="mllama",
        model_type="mllama",
        hub_example="meta-llama/Llama-3.2-11B-Vision-Instruct",
        language_model="model.language_model",
        vision_modules=("model.vision_model", "model.multi_modal_projector"),
        special_tokens=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|image|>",
            "<|python_tag|>",
            "<|finetune_right_pad_id|>",
        ),
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad="<|finetune_right_pad_id|>",
        extra_eos=("<|end_of_text|>",),
        chat_template=_MLLAMA_TEMPLATE,
        tiny_config=_mllama_config,
        tiny_processor=_mllama_processor,
        legacy_renames=(
            (r"^language_model\.lm_head\.", "lm_head."),
            (r"^language_model\.model\.", "model.language_model."),
            (r"^vision_model\.", "model.vision_model."),
            (r"^multi_modal_projector\.", "model.multi_modal_projector."),
        ),
    ),
)

# ---------------------------------------------------------------------------------- LLaVA-1.5

_LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def _llava_config(ids: TokenIds, vocab: int) -> dict[str, Any]:
    return {
        "model_type": "llava",
        "architectures": ["LlavaForConditionalGeneration"],
        "image_token_index": ids["<image>"],
        "image_seq_length": 256,  # (224 / 14) ** 2
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "projector_hidden_act": "gelu",
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 14,
            "projection_dim": 64,
        },
        "text_config": {
            "model_type": "llama",
            "vocab_size": vocab,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,  # plain multi-head attention, like Llama-2 / Vicuna-7B
            "max_position_embeddings": 4096,
            "bos_token_id": ids["<s>"],
            "eos_token_id": ids["</s>"],
            "pad_token_id": ids["<pad>"],
        },
    }


def _llava_processor(tokenizer: Any, template: str) -> Any:
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token
        chat_template=template,
    )


FAMILIES.add(
    "llava",
    Family(
        name="llava",
        model_type="llava",
        hub_example="llava-hf/llava-1.5-7b-hf",
        language_model="model.language_model",
        vision_modules=("model.vision_tower", "model.multi_modal_projector"),
        special_tokens=("<unk>", "<s>", "</s>", "<image>", "<pad>"),
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        chat_template=_LLAVA_TEMPLATE,
        tiny_config=_llava_config,
        tiny_processor=_llava_processor,
        legacy_renames=(
            (r"^language_model\.lm_head\.", "lm_head."),
            (r"^language_model\.model\.", "model.language_model."),
            (r"^vision_tower\.", "model.vision_tower."),
            (r"^multi_modal_projector\.", "model.multi_modal_projector."),
        ),
    ),
)
