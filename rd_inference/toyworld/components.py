"""Builders for the tiny pipeline's parts: a word-level CLIP tokenizer over the grammar, and small
``CLIPTextModel`` / ``AutoencoderKL`` / ``UNet2DConditionModel`` / ``DDIMScheduler`` configs.

The constructor arguments here are the architecture; ``train_pipeline`` trains them and saves the
assembled ``StableDiffusionPipeline`` with ``save_pretrained``.
"""

from __future__ import annotations

import itertools
from importlib import import_module

from rd_inference.toyworld.prompts import COUNTS, RELATIONS
from rd_inference.toyworld.world import COLOURS, SHAPES, SIZE

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_TOKENS = 16  # longest grammar prompt (any world) is 11 words + BOS + EOS
LATENT_CHANNELS = 4
LATENT_SIZE = SIZE // 4


def grammar_words(world: str = "v1") -> list[str]:
    if world in ("v2", "v3"):
        p, w = (import_module(f"rd_inference.toyworld.{world}.{m}") for m in ("prompts", "world"))
        words = {"a", "and", *p.COUNTS, *w.COLOURS, *w.SHAPES, *w.PLURALS.values()}
        relations = p.RELATIONS
    else:
        words = {"a", "and", *COUNTS, *COLOURS, *SHAPES, *(s + "s" for s in SHAPES)}
        relations = RELATIONS
    for r in relations:
        words.update(r.split())
    return sorted(words)


def image_size(world: str = "v1") -> int:
    if world in ("v2", "v3"):
        return import_module(f"rd_inference.toyworld.{world}.world").SIZE
    return SIZE


def tokenizer_vocab(world: str = "v1") -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges for a CLIP BPE tokenizer that keeps every grammar word whole.

    CLIP's BPE starts from characters (the last one carrying ``</w>``); for each word we add the merges
    that join it left to right, and every intermediate piece to the vocabulary. Single characters stay
    in the vocabulary so that words outside the grammar still tokenise (as characters).
    """
    vocab: list[str] = [BOS, EOS]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab += letters + [c + "</w>" for c in letters]
    merges: list[tuple[str, str]] = []
    for word in grammar_words(world):
        # Run BPE with the merges so far, then join what is left left-to-right with new, lower-priority
        # merges. Words handled earlier are unaffected: their own merges always apply before new ones.
        pieces = _bpe(list(word[:-1]) + [word[-1] + "</w>"], {m: i for i, m in enumerate(merges)})
        acc = pieces[0]
        for nxt in pieces[1:]:
            merges.append((acc, nxt))
            acc = acc + nxt
            if acc not in vocab:
                vocab.append(acc)
    return {t: i for i, t in enumerate(vocab)}, merges


def _bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b), len(ranks)), i) for i, (a, b) in enumerate(itertools.pairwise(pieces))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2 :]
    return pieces


def build_tokenizer(world: str = "v1"):
    from transformers import CLIPTokenizer

    vocab, merges = tokenizer_vocab(world)
    return CLIPTokenizer(
        vocab=vocab, merges=merges, model_max_length=MAX_TOKENS,
        bos_token=BOS, eos_token=EOS, unk_token=EOS, pad_token=EOS,
    )


def build_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        projection_dim=64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(cfg)


def build_vae(world: str = "v1"):
    from diffusers import AutoencoderKL

    # 32x32x3 -> 8x8x4 (v1), 48x48x3 -> 12x12x4 (v2) or 64x64x3 -> 16x16x4 (v3): three encoder blocks,
    # two of which downsample.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 48, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=16,
        sample_size=image_size(world),
    )


def build_unet(world: str = "v1"):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=image_size(world) // 4,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(48, 96),
        layers_per_block=1,
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def scheduler_kwargs() -> dict:
    # Cosine betas suit an 8x8 latent better than SD's scaled_linear (less signal left at t=T);
    # epsilon prediction and "leading" spacing with steps_offset=1 are SD 1.x's conventions.
    return {
        "num_train_timesteps": 1000,
        "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": "epsilon",
        "clip_sample": False,
    }


def build_ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**scheduler_kwargs(), set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
