"""The yes-token verifier's answers beyond one score per image: pairwise comparison and written rationales.

:class:`PairwiseMixin` gives :class:`rd_inference.yes_token.YesTokenVerifier` ``compare`` (which of two
images is better, asked in both orders so position bias cancels) and ``rationale`` (a short greedy
"yes/no, then why" for display, never used for scores).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from ..criteria import Criterion, resolve_criteria
from ..images import ImageBatch

RATIONALE_SUFFIX = " Then explain why in one or two sentences."


class PairwiseMixin:
    """``compare`` and ``rationale`` over the host's ``yes_no_logprobs``, ``_inputs`` and ``on_device``.

    The host also sets ``model``, ``processor``, ``criteria``, ``pairwise_criteria`` and ``probability``.
    """

    model: Any
    processor: Any
    criteria: tuple[Criterion, ...]
    pairwise_criteria: tuple[Criterion, ...]
    probability: str

    def compare(
        self, first: ImageBatch | Image.Image, second: ImageBatch | Image.Image, prompt: str | Sequence[str]
    ) -> torch.Tensor:
        """Probability that ``second[i]`` is better than ``first[i]``, [P], position bias cancelled.

        Each pair is asked in both orders ("is image 2 better than image 1?" with (first, second) and with
        (second, first)); the result is the mean of P(second wins | shown second) and
        1 - P(first wins | shown second), so ``compare(a, b) == 1 - compare(b, a)``.
        """
        a, b = self._pil_images(first), self._pil_images(second)
        if len(a) != len(b):
            raise ValueError(
                f"compare needs as many first images as second images, got {len(a)} and {len(b)}"
            )
        prompts = self._prompts(prompt, len(a))
        crits = self.pairwise_criteria
        rows = []
        for x, y, p in zip(a, b, prompts):
            for c in crits:
                rows += [([x, y], c.render(p)), ([y, x], c.render(p))]
        lp = self.yes_no_logprobs(rows).view(len(a), len(crits), 2, 2)
        probs = (
            torch.sigmoid(lp[..., 0] - lp[..., 1]) if self.probability == "conditional" else lp[..., 0].exp()
        )
        w = torch.tensor([c.weight for c in crits], dtype=probs.dtype)
        w = w / w.sum()
        second_wins = 0.5 * (probs[..., 0] + (1.0 - probs[..., 1]))  # [P, C]
        return (second_wins * w).sum(dim=1)

    @torch.inference_mode()
    def rationale(
        self, image: ImageBatch | Image.Image, prompt: str, criterion: Any = None, max_new_tokens: int = 96
    ) -> str:
        """The VLM's short written answer ("yes/no, then why") for one image; for display only.

        Greedy generation; never used for scores.
        """
        self._ensure_loaded()
        pil = self._pil_images(image)
        if len(pil) != 1:
            raise ValueError(f"rationale explains one image, got {len(pil)}")
        crit = self.criteria[0] if criterion is None else resolve_criteria(criterion)[0]
        with self.on_device():
            inputs = self._inputs([(pil, crit.render(prompt) + RATIONALE_SUFFIX)])
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1] :]
        return self.processor.tokenizer.decode(new, skip_special_tokens=True).strip()
