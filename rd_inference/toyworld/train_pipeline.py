"""Train the toy world's ``StableDiffusionPipeline`` from scratch on rendered scenes, on a CPU.

Stage 1 trains a small ``AutoencoderKL`` (32x32x3 -> 8x8x4, or 48x48x3 -> 12x12x4 for ``--world v2``) on renders; stage 2 encodes the data set
once and trains a ``UNet2DConditionModel`` and a ``CLIPTextModel`` jointly on the latents (epsilon
prediction, cosine betas, 10% empty-prompt dropout for classifier-free guidance, EMA weights). The
EMA weights are saved with ``save_pretrained``. Seeded and resumable: rerunning the same command
continues from ``<work>/ckpt_*.pt``.

    python -m rd_inference.toyworld.train_pipeline --work runs/toy_train \\
        --out rd_inference/toyworld/weights/v1/pipeline
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rd_inference.toyworld import components
from rd_inference.toyworld.worlds import WORLDS, get_world

# Harder skills get more of the data; single objects and shape pairs are few prompts and learnt fast.
SKILL_WEIGHTS = {
    "v1": {"single": 0.15, "two_objects": 0.15, "counting": 0.2, "colour_attribution": 0.25, "position": 0.25},
    "v2": {"single_object": 0.08, "two_object": 0.12, "counting": 0.2, "colors": 0.12, "position": 0.24,
           "color_attr": 0.24},
    # v3's hard prompts (counts to six, three-object binding) are most of counting and color_attr
    "v3": {"single_object": 0.06, "two_object": 0.1, "counting": 0.24, "colors": 0.08, "position": 0.24,
           "color_attr": 0.28},
}


def make_dataset(n: int, seed: int, world: str = "v1") -> tuple[torch.Tensor, list[str]]:
    """``n`` renders of train-split prompts as uint8 [n,3,H,W], and their prompts."""
    w = get_world(world)
    weights = SKILL_WEIGHTS[world]
    rng = np.random.default_rng(seed)
    by_skill = {s: w.prompts("train", s) for s in weights}
    skills = rng.choice(list(weights), size=n, p=list(weights.values()))
    texts = [str(rng.choice(by_skill[s])) for s in skills]
    images = np.stack([np.asarray(w.render(w.sample_scene(t, rng))) for t in texts])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), texts


def to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8.float() / 127.5 - 1.0


class Log:
    def __init__(self, path: Path):
        self.path, self.t0 = path, time.time()

    def __call__(self, **fields) -> None:
        fields = {"elapsed_s": round(time.time() - self.t0, 1), **fields}
        line = json.dumps(fields)
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


def train_vae(vae, images: torch.Tensor, steps: int, batch: int, lr: float, work: Path, log: Log,
              gen: torch.Generator) -> None:
    ckpt = work / "ckpt_vae.pt"
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step = state["step"]
    vae.train()
    while step < steps:
        idx = torch.randint(len(images), (batch,), generator=gen)
        x = to_unit(images[idx])
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        mse, l1 = F.mse_loss(rec, x), F.l1_loss(rec, x)
        kl = post.kl().mean()
        loss = mse + 0.5 * l1 + 1e-6 * kl
        for g in opt.param_groups:  # cosine decay to 10%
            g["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0 or step == steps:
            log(stage="vae", step=step, mse=round(mse.item(), 5), l1=round(l1.item(), 4), kl=round(kl.item(), 1))
        if step % 250 == 0 or step == steps:
            torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "step": step}, ckpt)


@torch.no_grad()
def encode_all(vae, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    vae.eval()
    means, stds = [], []
    for i in range(0, len(images), batch):
        post = vae.encode(to_unit(images[i : i + batch])).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1.0 - decay)


def train_denoiser(unet, text_encoder, tokenizer, mean, std, texts, scaling: float, args, work: Path,
                   log: Log, gen: torch.Generator, deadline: float) -> int:
    from diffusers import DDPMScheduler

    noise_sched = DDPMScheduler(**components.scheduler_kwargs())
    ids_all = tokenizer(texts, padding="max_length", max_length=components.MAX_TOKENS, return_tensors="pt").input_ids
    empty = tokenizer([""], padding="max_length", max_length=components.MAX_TOKENS, return_tensors="pt").input_ids
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    ema_unet, ema_te = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    ckpt = work / "ckpt_unet.pt"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["te"])
        ema_unet.load_state_dict(state["ema_unet"])
        ema_te.load_state_dict(state["ema_te"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step = state["step"]
        log(stage="unet", resumed_from=step)

    def save() -> None:
        torch.save({"unet": unet.state_dict(), "te": text_encoder.state_dict(), "ema_unet": ema_unet.state_dict(),
                    "ema_te": ema_te.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "step": step},
                   ckpt)

    unet.train()
    text_encoder.train()
    running = 0.0
    while step < args.unet_steps:
        if time.time() > deadline:
            log(stage="unet", stopped_at=step, reason="time budget reached")
            break
        idx = torch.randint(len(texts), (args.batch,), generator=gen)
        z0 = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scaling
        ids = ids_all[idx].clone()
        drop = torch.rand(args.batch, generator=gen) < args.cfg_dropout
        ids[drop] = empty
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (args.batch,), generator=gen)
        zt = noise_sched.add_noise(z0, noise, t)
        cond = text_encoder(ids)[0]
        pred = unet(zt, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, noise)
        warm = min(1.0, (step + 1) / args.warmup)
        decay_frac = 0.5 * (1 + math.cos(math.pi * min(step / args.unet_steps, 1.0)))
        for g in opt.param_groups:
            g["lr"] = args.lr * warm * (0.1 + 0.9 * decay_frac)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_te, text_encoder, decay)
        running += loss.item()
        if step % 50 == 0:
            log(stage="unet", step=step, loss=round(running / 50, 4), lr=round(opt.param_groups[0]["lr"], 6))
            running = 0.0
        if step % args.ckpt_every == 0:
            save()
    save()
    unet.load_state_dict(ema_unet.state_dict())
    text_encoder.load_state_dict(ema_te.state_dict())
    return step


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("runs/toy_train"), help="checkpoints and log")
    ap.add_argument("--out", type=Path, default=None, help="where to save (default: the world's shipped folder)")
    ap.add_argument("--world", choices=WORLDS, default="v1", help="which shapes world to train on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=int, default=20000, help="number of rendered training scenes")
    ap.add_argument("--vae-steps", type=int, default=1200)
    ap.add_argument("--vae-batch", type=int, default=32)
    ap.add_argument("--vae-lr", type=float, default=2e-3)
    ap.add_argument("--unet-steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--cfg-dropout", type=float, default=0.1)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--time-budget-min", type=float, default=None,
                    help="stop the denoiser stage early (and export) once this much wall time has passed")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    args.out = args.out or get_world(args.world).pipeline_path
    t_start = time.time()
    deadline = t_start + 60 * args.time_budget_min if args.time_budget_min else math.inf
    args.work.mkdir(parents=True, exist_ok=True)
    log = Log(args.work / "log.jsonl")
    log(event="start", args={k: str(v) for k, v in vars(args).items()})

    torch.manual_seed(args.seed)  # module initialisation; all later randomness uses explicit generators
    images, texts = make_dataset(args.data, args.seed, args.world)
    log(event="data", n=len(texts))
    tokenizer = components.build_tokenizer(args.world)
    vae, unet = components.build_vae(args.world), components.build_unet(args.world)
    text_encoder = components.build_text_encoder(tokenizer)

    train_vae(vae, images, args.vae_steps, args.vae_batch, args.vae_lr, args.work, log,
              torch.Generator().manual_seed(args.seed + 1))
    mean, std = encode_all(vae, images)
    scaling = float(1.0 / mean.std())
    vae.register_to_config(scaling_factor=scaling)
    log(event="latents", shape=list(mean.shape), scaling_factor=round(scaling, 4), mean_std=round(float(std.mean()), 4))

    steps = train_denoiser(unet, text_encoder, tokenizer, mean, std, texts, scaling, args, args.work, log,
                           torch.Generator().manual_seed(args.seed + 2), deadline)
    export(vae, unet, text_encoder, tokenizer, args.out)
    minutes = (time.time() - t_start) / 60
    log(event="done", unet_steps=steps, minutes=round(minutes, 1), out=str(args.out))
    (args.out / "training.json").write_text(json.dumps(
        {"unet_steps": steps, "vae_steps": args.vae_steps, "wall_minutes": round(minutes, 1),
         "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))


def export(vae, unet, text_encoder, tokenizer, out: Path) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
        scheduler=components.build_ddim(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)


if __name__ == "__main__":
    main()
