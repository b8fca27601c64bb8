"""Tiny, randomly initialised VLMs of real families, saved as Hugging Face folders (safetensors).

Shared test helpers: a word-level tokenizer trained on the spot with ``tokenizers`` (it knows yes/no, the
criteria words and each family's special tokens), and per family a model built from a config plus its
image processor and chat template. Hidden sizes are multiples of 64 so bitsandbytes 4-bit can quantize
every language-model Linear on CPU.

    >>> path = build_tiny_vlm("qwen2_5_vl", tmp_path / "qwen")
    >>> YesTokenVerifier.from_pretrained(str(path), device="cpu")
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

FAMILIES = ("llava", "qwen2_5_vl", "qwen3_vl", "idefics3")

BASE_SPECIALS = ["[PAD]", "[UNK]", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
FAMILY_SPECIALS = {
    "llava": ["<image>"],
    "qwen2_5_vl": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"],
    "qwen3_vl": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"],
    "idefics3": ["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
    + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)],
}
IMAGE_MARKUP = {
    "llava": "<image>",
    "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "qwen3_vl": "<|vision_start|><|image_pad|><|vision_end|>",
    "idefics3": "<image>",
}
CORPUS = [
    "Yes yes No no",
    "user assistant system Image image",
    "two red circles a blue square on the left of a green triangle a cat a dog playing",
]

HIDDEN = 64  # a multiple of 64 (and so is the MLP's 2x): 4-bit Linear needs in_features % 64 == 0


def chat_template(image_markup: str) -> str:
    """A ChatML-like template that puts ``image_markup`` where each image goes."""
    return (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for c in message['content'] %}{% if c['type'] == 'image' %}" + image_markup + ""
        "{% elif c['type'] == 'text' %}{{ c['text'] }} {% endif %}{% endfor %}{% endif %}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


def make_tokenizer(specials: list[str], template: str, *, with_yes: bool = True):
    """A word-level tokenizer trained on a small corpus (plus the built-in criteria texts)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from rd_inference.criteria import builtin_criteria, builtin_pairwise

    corpus = CORPUS + [c.template for c in [*builtin_criteria().values(), *builtin_pairwise().values()]]
    corpus.append("Then explain why in one or two sentences .")
    if not with_yes:
        corpus = [" ".join(w for w in line.split() if w.lower().strip('".,?') != "yes") for line in corpus]
    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.decoder = decoders.WordPiece()
    raw.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=BASE_SPECIALS + specials))
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        eos_token="<|im_end|>",
        chat_template=template,
    )


def _text_config(tok, hidden: int = HIDDEN, layers: int = 2, **extra) -> dict:
    return dict(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 32,  # head_dim 32 (the Qwen mrope sections below sum to 16)
        num_key_value_heads=1,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        initializer_range=0.05,  # large enough that the image visibly moves the tiny model's answer
        **extra,
    )


def build_tiny_vlm(
    family: str,
    out_dir: str | Path,
    *,
    with_yes: bool = True,
    seed: int = 0,
    hidden: int = HIDDEN,
    layers: int = 2,
) -> Path:
    """Build, save (safetensors) and return the folder of a tiny ``family`` VLM with its processor files.

    ``hidden`` (a multiple of 64) and ``layers`` size the language model; the vision side stays tiny.
    """
    from transformers import AutoModelForImageTextToText

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(FAMILY_SPECIALS[family], chat_template(IMAGE_MARKUP[family]), with_yes=with_yes)
    ids = tok.convert_tokens_to_ids
    torch.manual_seed(seed)

    if family == "llava":
        from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaProcessor
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        config = LlavaConfig(
            vision_config=CLIPVisionConfig(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=16,
                patch_size=8,
                projection_dim=32,
            ),
            text_config=LlamaConfig(**_text_config(tok, hidden, layers)),
            image_token_id=ids("<image>"),
            vision_feature_layer=-1,
            vision_feature_select_strategy="default",
        )
        image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}
        )
        processor = LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tok,
            patch_size=8,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
            chat_template=tok.chat_template,
        )
        processor.save_pretrained(out)
    elif family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        config = Qwen2_5_VLConfig(
            text_config=_text_config(
                tok,
                hidden,
                layers,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
            ),
            vision_config={
                "depth": 1,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 2,
                "out_hidden_size": hidden,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "fullatt_block_indexes": [0],
                "window_size": 56,
            },
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
        )
        image_processor = Qwen2VLImageProcessorPil(
            min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2
        )
        # The real processor cannot be built here (it wants a torchvision video processor): save the parts.
        tok.save_pretrained(out)
        image_processor.save_pretrained(out)
    elif family == "qwen3_vl":
        from transformers import Qwen3VLConfig
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        config = Qwen3VLConfig(
            text_config=_text_config(
                tok,
                hidden,
                layers,
                head_dim=32,
                rope_parameters={
                    "rope_type": "default",
                    "rope_theta": 10000.0,
                    "mrope_section": [4, 6, 6],
                    "mrope_interleaved": True,
                },
            ),
            vision_config={
                "depth": 1,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 2,
                "out_hidden_size": hidden,
                "patch_size": 16,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "num_position_embeddings": 16,
                "deepstack_visual_indexes": [0],
            },
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
        )
        image_processor = Qwen2VLImageProcessorPil(
            min_pixels=64 * 64, max_pixels=64 * 64, patch_size=16, merge_size=2
        )
        tok.save_pretrained(out)
        image_processor.save_pretrained(out)
    else:  # idefics3
        from transformers import Idefics3Config, Idefics3Processor, LlamaConfig
        from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

        config = Idefics3Config(
            vision_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 32,
                "patch_size": 8,
            },
            text_config=LlamaConfig(**_text_config(tok, hidden, layers)).to_dict(),
            scale_factor=2,
            image_token_id=ids("<image>"),
        )
        image_processor = Idefics3ImageProcessorPil(
            do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32}
        )
        processor = Idefics3Processor(
            image_processor=image_processor, tokenizer=tok, image_seq_len=4, chat_template=tok.chat_template
        )
        processor.save_pretrained(out)

    model = AutoModelForImageTextToText.from_config(config).eval()
    model.save_pretrained(out)  # safetensors
    return out


def pickle_only_copy(src: str | Path, dst: str | Path) -> Path:
    """A copy of a saved model folder whose weights are a pickle (``pytorch_model.bin``) only."""
    from safetensors.torch import load_file

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    torch.save(load_file(src / "model.safetensors"), dst / "pytorch_model.bin")
    return dst


def random_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``n`` random RGB images as a float tensor [n,3,size,size] in [0,1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


if __name__ == "__main__":  # build all families into ./tiny_vlms for manual poking
    for fam in FAMILIES:
        print(fam, build_tiny_vlm(fam, Path("tiny_vlms") / fam))
    print(json.dumps(FAMILIES))
