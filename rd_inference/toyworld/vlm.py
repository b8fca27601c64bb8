"""The toy world's verifier: a tiny ``LlavaForConditionalGeneration`` built from configs, and its processor.

A CLIP vision tower reads the 32x32 image as 64 patches of 4x4 pixels (v2: 48x48 as 64 of 6x6); a small Llama answers. The
tokenizer is word-level, trained here on the criteria texts and the grammar's words, with the chat
template a LLaVA/ChatML model uses. Scoring goes through :class:`rd_inference.yes_token.YesTokenVerifier`
exactly as for a real VLM; :func:`training_inputs` builds training batches through that same verifier's
row-building code, so training and scoring inputs are identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from rd_inference.toyworld.components import grammar_words, image_size

SPECIALS = ["[PAD]", "[UNK]", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
IMAGE_TOKEN = "<image>"
PATCH = 4  # v1: 32x32 as 8x8 patches of 4x4 pixels


def patch_size(world: str = "v1") -> int:
    """Patch side in pixels: 64 patches for either world (v2's 48x48 images as 6x6-pixel patches)."""
    return image_size(world) // 8

# ChatML with the image token where each image goes (the LLaVA processor expands it to one token per patch).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }} {% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus(world: str = "v1") -> list[str]:
    from rd_inference.criteria import builtin_criteria, builtin_pairwise

    lines = [c.template for c in [*builtin_criteria().values(), *builtin_pairwise().values()]]
    lines += ["Yes yes No no", "user assistant system Image image", " ".join(grammar_words(world)),
              "Then explain why in one or two sentences ."]
    return lines


def build_tokenizer(world: str = "v1"):
    """A word-level ``PreTrainedTokenizerFast``: yes/no, criteria words and grammar words are single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.decoder = decoders.WordPiece()
    raw.train_from_iterator(_corpus(world), trainers.WordLevelTrainer(special_tokens=SPECIALS))
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]",
                                   eos_token="<|im_end|>", chat_template=CHAT_TEMPLATE)


def build_vlm(seed: int = 0, *, vision_hidden: int = 128, vision_layers: int = 3, text_hidden: int = 128,
              text_layers: int = 3, world: str = "v1"):
    """A randomly initialised tiny LLaVA and its ``LlavaProcessor`` (untrained)."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = build_tokenizer(world)
    size, patch = image_size(world), patch_size(world)
    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, num_hidden_layers=vision_layers,
            num_attention_heads=vision_hidden // 32, image_size=size, patch_size=patch,
            projection_dim=vision_hidden,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tok), hidden_size=text_hidden, intermediate_size=2 * text_hidden,
            num_hidden_layers=text_layers, num_attention_heads=text_hidden // 32, num_key_value_heads=text_hidden // 32,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
            max_position_embeddings=512,
        ),
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    # The images are already at size: no resize or crop changes a pixel, only CLIP's normalisation applies.
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE)
    model = LlavaForConditionalGeneration(config)
    return model, processor


def wrap(model, processor, **kwargs):
    """A :class:`YesTokenVerifier` around an in-memory model (for training and tuning)."""
    from rd_inference.yes_token import YesTokenVerifier

    return YesTokenVerifier(model, processor, device="cpu", **kwargs)


def training_inputs(verifier, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict:
    """Model inputs for (image, prompt) pairs, built by the verifier's own scoring path.

    One row per pair and per criterion (the default: one), as :meth:`YesTokenVerifier.score` builds them.
    """
    rows = [([im], c.render(p)) for im, p in zip(images, prompts) for c in verifier.criteria]
    return verifier._inputs(rows)


def yes_no_loss(verifier, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the whole vocabulary at the answer position, target "yes" or "no".

    Over the whole vocabulary (not only yes vs no) so the verifier's ``full`` probability is trained
    as well as its ``conditional`` one.
    """
    yes, no = verifier.yes_ids[0], verifier.no_ids[0]
    target = torch.where(labels.bool(), torch.tensor(yes), torch.tensor(no))
    return torch.nn.functional.cross_entropy(logits.float(), target)
