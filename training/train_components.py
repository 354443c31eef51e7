"""The frozen networks of tiny-synth, trained from scratch on the SynthScenes cache.

Each stage trains one component for a wall-clock budget (or `max_steps`), writes a CSV log row
every `log_every` steps and returns its metrics. `train.py` orders them:

    clap     CLAP-style text encoder (ClapTextModelWithProjection + a byte-level BPE tokenizer
             trained on the captions), contrastive (InfoNCE) against a throwaway mel-CNN audio
             tower. Examples whose targets have the same class set are all positives of each
             other (soft targets), so repeated captions in a batch are not false negatives.
    clip     CLIP-style image encoder (open_clip ViT), contrastive: its pooled embedding against
             the caption's CLAP text embedding (frozen) through a throwaway linear text head.
             Dense auxiliary loss (not in CLIP): each PATCH token is classified, by cosine
             similarity to the text-head embeddings of the class names ("a dog", ..., "a tree",
             and "background"), into the class of the object covering it (the per-object masks
             give the labels). A real CLIP's patch tokens are object-discriminative after
             400M pairs; this loss buys that property on a few thousand scenes.
    vae      AutoencoderKL on log-mels as 1-channel images (B, 1, frames, 64): L1 reconstruction
             + kl_weight * KL (AudioLDM's recipe without its GAN). The scaling factor is set
             afterwards to 1 / std of the latents, as Stable Diffusion / AudioLDM computed theirs.
    vocoder  SpeechT5HifiGan, or a Vocos (objaudio_rt/modelio/vocos.py), on random 32-frame crops:
             mel L1 + multi-resolution STFT loss.
             No discriminators: within minutes of CPU/GPU time the adversarial losses do not
             pay for themselves (HiFi-GAN needs ~100k+ steps for them to matter); the
             reconstruction losses alone give intelligible, somewhat buzzy audio.
"""
from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from objaudio_rt.core.audio import MEL_FLOOR, MelConfig, mel_spectrogram
from objaudio_rt.core.errors import check
from objaudio_rt.modelio.artifacts import replacing
from objaudio_rt.modelio.encoders import ImageEncoder, TextEncoder, build_tokenizer
from objaudio_rt.modelio.model import ObjaudioModel

from .data import KINDS, SynthCache
from .synthscenes import ALL_CLASSES, PHRASES, SILENCE_CAPTION


@dataclass
class StageBudget:
    seconds: float
    max_steps: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    log_every: int = 25


class CsvLog:
    """Appends rows of named floats to a CSV file (header written once)."""

    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = path, ["step", "seconds"] + fields
        new = not path.exists()
        self.file = open(path, "a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(self.fields)

    def write(self, step: int, seconds: float, values: dict[str, float]) -> None:
        self.writer.writerow([step, f"{seconds:.1f}"] + [f"{values[k]:.5g}" for k in self.fields[2:]])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def run_loop(name: str, budget: StageBudget, step_fn, log_path: Path | None, fields: list[str],
             sync=None, first_step: int = 0) -> dict:
    """Call `step_fn(step) -> {field: float}` until the budget ends. Returns the last logged means.

    log_path None: no CSV and no progress bar (non-zero DDP ranks). `sync(stop) -> stop` makes
    the stop decision collective (DDP). `first_step`: the steps a resumed run had before this call;
    the CSV and the progress bar count on from it (`step_fn` and the returned "steps" do not)."""
    log = CsvLog(log_path, fields) if log_path is not None else None
    start, step, sums, last = time.time(), 0, {k: 0.0 for k in fields}, {}
    bar = tqdm(desc=name, unit="step", mininterval=5, disable=log is None, initial=first_step)
    while True:
        elapsed = time.time() - start
        stop = (budget.max_steps is not None and step >= budget.max_steps) or (step > 0 and elapsed >= budget.seconds)
        if sync is not None:
            stop = sync(stop)
        if stop:
            break
        values = step_fn(step)
        step += 1
        bar.update(1)
        for k in fields:
            sums[k] += values[k]
        if step % budget.log_every == 0 or (budget.max_steps is not None and step == budget.max_steps):
            n = budget.log_every if step % budget.log_every == 0 else step % budget.log_every
            last = {k: v / n for k, v in sums.items()}
            if log is not None:
                log.write(first_step + step, time.time() - start, last)
            bar.set_postfix({k: f"{v:.4f}" for k, v in last.items()})
            sums = {k: 0.0 for k in fields}
    if not last and step:
        last = {k: v / (step % budget.log_every or budget.log_every) for k, v in sums.items()}
        if log is not None:
            log.write(first_step + step, time.time() - start, last)
    bar.close()
    if log is not None:
        log.close()
    return {"steps": step, "seconds": round(time.time() - start, 1), **{k: round(v, 5) for k, v in last.items()}}


def save_partial(path: Path, live: nn.Module, ema: nn.Module | None, opt, step: int) -> None:
    """A resumable run's state (training.train's ldm stage, training.distill): the weights as safetensors
    (`live.*` and, if kept, `ema.*`; the step in the metadata), the optimizer's tensors beside them in
    `.optim.pt`, each file replaced atomically."""
    tensors = {f"live.{k}": v.detach().cpu().contiguous() for k, v in live.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step)})
    with replacing(path.with_suffix(".optim.pt")) as tmp:
        torch.save(opt.state_dict(), str(tmp))


def load_partial(path: Path, live: nn.Module, ema: nn.Module | None, opt=None) -> int:
    """Reads `save_partial`'s files into live (and ema, where the file kept one; and opt, where given and
    saved: weights_only, nothing is unpickled); returns the step."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        step = int(f.metadata()["step"])
    state = load_file(str(path))
    live.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("live.")})
    if ema is not None and any(k.startswith("ema.") for k in state):
        ema.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ema.")})
    optim = path.with_suffix(".optim.pt")
    if opt is not None and optim.is_file():
        opt.load_state_dict(torch.load(str(optim), weights_only=True))
    return step


def soft_infonce(a: torch.Tensor, b: torch.Tensor, same: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE. a, b: (B, L) L2-normalised; same: (B, B) 1 where pairs are positives."""
    logits = logit_scale.exp().clamp(max=100) * a @ b.t()                          # (B, B)
    target = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean()
                  + torch.sum(-target.t() * logits.t().log_softmax(1), 1).mean())


def class_set_equal(hot: torch.Tensor) -> torch.Tensor:
    """hot: (B, C) multi-hot. Returns (B, B) float, 1 where the two class sets are equal."""
    return (hot[:, None, :] == hot[None, :, :]).all(-1).float()


class MelAudioTower(nn.Module):
    """Throwaway audio tower for CLAP training: a small CNN over the log-mel (B, frames, n_mels)."""

    def __init__(self, dim: int, width: int = 32):
        super().__init__()
        layers, c = [], 1
        for w in (width, width * 2, width * 4, width * 4):
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.GELU()]
            c = w
        self.net = nn.Sequential(*layers)
        self.proj = nn.Linear(c, dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.net((mel[:, None] + 5.0) / 4.0)                                    # (B, C, f/16, m/16)
        return F.normalize(self.proj(x.mean(dim=(2, 3))), dim=-1)                   # (B, dim)


def caption_corpus(cache: SynthCache) -> list[str]:
    """Every caption, plus the class phrases that text selections use at test time."""
    phrases = [f"{noun} {ger}" for variants in PHRASES.values() for noun, ger, _ in variants]
    names = [f"a {c}" for c in ALL_CLASSES]
    return sorted(set(cache.captions)) + phrases + names + [SILENCE_CAPTION, "background"]


def train_clap(model: ObjaudioModel, cache: SynthCache, budget: StageBudget, log_path: Path,
               device: torch.device, seed: int) -> dict:
    """Trains model.text_encoder (tokenizer included) in place."""
    cfg = model.config.text
    tokenizer = build_tokenizer(caption_corpus(cache), cfg.vocab_size)
    text = TextEncoder(cfg, tokenizer=tokenizer).to(device).train()
    audio = MelAudioTower(cfg.projection_dim).to(device).train()
    scale = nn.Parameter(torch.tensor(2.659, device=device))                        # log(1 / 0.07)
    params = list(text.parameters()) + list(audio.parameters()) + [scale]
    opt = torch.optim.AdamW(params, lr=budget.lr, weight_decay=1e-2)
    usable = torch.nonzero(cache.ex_kind != KINDS.index("silent")).squeeze(1)       # silent: no caption
    hot = cache.target_classes()
    gen = torch.Generator().manual_seed(seed)
    ids = text.tokenize(cache.captions, "cpu")                                       # all captions once

    def step(_):
        idx = usable[torch.randint(len(usable), (budget.batch_size,), generator=gen)]
        t = text(ids["input_ids"][idx].to(device), ids["attention_mask"][idx].to(device))
        a = audio(cache.mels[idx].float().to(device))
        loss = soft_infonce(t, a, class_set_equal(hot[idx]).to(device), scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    metrics = run_loop("clap", budget, step, log_path, ["loss"])
    model.text_encoder = text.eval()
    return metrics


def train_clip(model: ObjaudioModel, cache: SynthCache, budget: StageBudget, log_path: Path,
               device: torch.device, seed: int, dense_weight: float = 1.0) -> dict:
    """Trains model.image_encoder in place (needs a trained text encoder)."""
    enc: ImageEncoder = model.image_encoder.to(device).train()
    text = model.text_encoder.to(device).eval()
    dim = model.config.image.embed_dim
    head = nn.Linear(text.cfg.projection_dim, dim).to(device)                       # throwaway text tower head
    scale = nn.Parameter(torch.tensor(2.659, device=device))
    dense_scale = nn.Parameter(torch.tensor(2.659, device=device))
    opt = torch.optim.AdamW(list(enc.parameters()) + list(head.parameters()) + [scale, dense_scale],
                            lr=budget.lr, weight_decay=1e-2)
    mixtures = torch.nonzero(cache.ex_kind == KINDS.index("mixture")).squeeze(1)    # one per scene
    with torch.no_grad():
        caption_emb = torch.cat([text.encode([cache.captions[i] for i in chunk.tolist()], device)
                                 for chunk in mixtures.split(256)])                 # (S, Lq)
        class_emb = text.encode([f"a {c}" for c in ALL_CLASSES] + ["background"], device)   # (C+1, Lq)
    hot = cache.target_classes()[mixtures]
    scene_of = cache.ex_scene[mixtures]
    labels = cache.patch_labels(background=len(ALL_CLASSES))                        # (S, P)
    gen = torch.Generator().manual_seed(seed)

    def step(_):
        pick = torch.randint(len(mixtures), (budget.batch_size,), generator=gen)
        scenes = scene_of[pick]
        pixels = enc.preprocess(cache.images[scenes].to(device))                     # (B, 3, S, S)
        pooled, tokens = enc.visual(pixels)                                          # (B, L), (B, P, width)
        patches = F.normalize(tokens @ enc.visual.proj, dim=-1)                      # (B, P, L)
        t = F.normalize(head(caption_emb[pick]), dim=-1)                             # (B, L)
        contrastive = soft_infonce(F.normalize(pooled, dim=-1), t, class_set_equal(hot[pick]).to(device), scale)
        cls = F.normalize(head(class_emb), dim=-1)                                   # (C+1, L)
        logits = dense_scale.exp().clamp(max=100) * patches @ cls.t()                # (B, P, C+1)
        dense = F.cross_entropy(logits.flatten(0, 1), labels[scenes].flatten().to(device))
        loss = contrastive + dense_weight * dense
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = (logits.argmax(-1) == labels[scenes].to(device)).float().mean()
        return {"loss": loss.item(), "contrastive": contrastive.item(), "dense": dense.item(),
                "patch_acc": acc.item()}

    metrics = run_loop("clip", budget, step, log_path, ["loss", "contrastive", "dense", "patch_acc"])
    enc.eval()
    return metrics


def train_vae(model: ObjaudioModel, cache: SynthCache, budget: StageBudget, log_path: Path,
              device: torch.device, seed: int, kl_weight: float = 1e-6) -> dict:
    """Trains model.vae in place and sets its scaling factor (config and module)."""
    vae = model.vae.to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=budget.lr, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(seed)

    def step(_):
        idx = torch.randint(cache.num_examples, (budget.batch_size,), generator=gen)
        mel = cache.mels[idx].float().to(device)[:, None]                            # (B, 1, frames, 64)
        post = vae.encode(mel).latent_dist
        rec = vae.decode(post.sample()).sample
        l1 = (rec - mel).abs().mean()
        kl = post.kl().mean()
        loss = l1 + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "l1": l1.item(), "kl": kl.item()}

    metrics = run_loop("vae", budget, step, log_path, ["loss", "l1", "kl"])
    vae.eval()
    with torch.no_grad():
        idx = torch.randperm(cache.num_examples, generator=gen)[:256]
        z = torch.cat([vae.encode(cache.mels[chunk].float().to(device)[:, None]).latent_dist.mode()
                       for chunk in idx.split(32)])
    factor = float(1.0 / z.std())
    vae.register_to_config(scaling_factor=factor)
    model.config.vae.scaling_factor = factor
    return {**metrics, "scaling_factor": round(factor, 6)}


def stft_loss(pred: torch.Tensor, target: torch.Tensor,
              resolutions=((256, 64), (512, 128), (1024, 256)), per_example: bool = False,
              floor: float = 1e-7) -> torch.Tensor:
    """Multi-resolution STFT loss (spectral convergence + log magnitude). pred, target: (B, T).

    per_example: the spectral convergence of each example, averaged, in place of the batch's
    (where the loud examples of a batch drown a quiet one's errors); an example under 5 % of the
    batch's mean level is divided by that level instead of its own (a silent crop).
    floor: magnitudes are compared in log above it (`vocoder_loss_floor`)."""
    total = pred.new_zeros(())
    for n_fft, hop in resolutions:
        window = torch.hann_window(n_fft, device=pred.device)
        p = torch.stft(pred, n_fft, hop, window=window, return_complex=True).abs().clamp_min(floor)
        t = torch.stft(target, n_fft, hop, window=window, return_complex=True).abs().clamp_min(floor)
        if per_example:
            level = t.flatten(1).norm(dim=1)
            least = 0.05 * level.mean().clamp_min(1e-7)          # a near-silent crop's error is not blown up
            total = total + ((t - p).flatten(1).norm(dim=1) / torch.maximum(level, least)).mean()
        else:
            total = total + torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp_min(1e-7)
        total = total + (p.log() - t.log()).abs().mean()
    return total / len(resolutions)


def vocoder_loss_floor(floor: float) -> tuple[float, float]:
    """The levels below which the vocoder's reconstruction losses stop counting: (log-mel, STFT magnitude).

    SynthScenes stems are digital silence between their events (a bird's chirps, a bell's strikes), which
    the log-mel reads as log(MEL_FLOOR) = -11.5 and the STFT loss as log(1e-7) = -16.1. Against those, a
    vocoder's faint noise between events costs more than a chirp 30 dB too quiet, so it learns to be
    quiet: on 8 bird crops, 200 steps of the unfloored losses leave the loudest chirp bins 3.4 -> 4.3 below
    the real ones (log units); floored at 1e-3 (log-mel) and 1e-2 (STFT), 3.4 -> 0.7, and what it makes of
    an all-silent log-mel stays below 3e-4 (training/README.md, sixteenth session). floor 0: unfloored."""
    check(math.isfinite(floor) and floor >= 0, f"vocoder loss floor {floor}: give 0 (none) or a level > 0, e.g. 1e-3")
    if floor == 0:
        return math.log(MEL_FLOOR), 1e-7
    check(floor > MEL_FLOOR, f"vocoder loss floor {floor} is below the log-mel's own floor {MEL_FLOOR}: give 0 or more")
    return math.log(floor), 10 * floor


def vocoder_draw_weights(classes: torch.Tensor, usable: torch.Tensor, focus: dict[str, float]) -> torch.Tensor:
    """Sampling weights over `usable` (indices into `classes`, the (V, C) multi-hot of each vocoder
    example's sounding classes, C = len(ALL_CLASSES)): each example the largest weight among its
    classes, a class outside `focus` weighing 1 (an example of no known class: 1). Summing to one."""
    unknown = sorted(set(focus) - set(ALL_CLASSES))
    check(not unknown, f"vocoder focus classes {unknown} are not SynthScenes classes: use some of {', '.join(ALL_CLASSES)}")
    bad = {c: w for c, w in focus.items() if not (math.isfinite(w) and w > 0)}
    check(not bad, f"vocoder focus weights {bad}: give each class a weight > 0")
    weight = torch.ones(len(ALL_CLASSES), dtype=torch.float64)
    for c, w in focus.items():
        weight[ALL_CLASSES.index(c)] = w
    hot = classes[usable] > 0                                                       # (U, C)
    per = torch.where(hot, weight, torch.zeros_like(weight)).amax(dim=1)            # the largest of its classes'
    per = torch.where(hot.any(dim=1), per, torch.ones_like(per))                    # no class known: 1
    return per / per.sum()


def train_vocoder(model: ObjaudioModel, cache: SynthCache, budget: StageBudget, log_path: Path,
                  device: torch.device, seed: int, crop_frames: int = 32, adversarial: float = 0.0,
                  discriminator: Path | None = None, disc_width: float = 0.125, resume: Path | None = None,
                  save_every_s: float = 120.0, focus: dict[str, float] | None = None,
                  stft_per_example: bool = False, loss_floor: float = 0.0) -> dict:
    """Trains model.vocoder in place on (mel, waveform) crops of the first V cached examples.

    loss_floor > 0: the reconstruction losses compare log-mels above log(loss_floor) and STFT
    magnitudes above 10 x loss_floor (`vocoder_loss_floor`); 0: above the log-mel's own floor and 1e-7.

    focus: {class: weight}: an example that sounds one of these classes is drawn that many times as
    often as one that does not (several: the largest weight; `vocoder_draw_weights`); None or {}:
    every non-silent example alike. stft_per_example: `stft_loss(per_example=True)`.

    adversarial > 0: HiFi-GAN's discriminators (training/vocoder_gan.py) train beside it, and the
    generator's loss adds `adversarial` x (least-squares adversarial loss + 2 x feature matching).
    `discriminator`: a safetensors file the discriminators start from when it exists and are saved
    to at the end, so that a later run continues the same adversarial game.
    `resume`: a partial-state file (train_ldm.save_partial's format: the vocoder as `live.*`, the step in
    the metadata, the optimizer beside it; the discriminators and theirs in `resume`'s sibling
    `vocoder.discriminator.partial.safetensors`) written every `save_every_s` seconds and read back on
    start, so that a stopped run loses at most that much; `training.swap_vocoder` reads it mid-run."""
    voc = model.vocoder.to(device).train()
    opt = torch.optim.AdamW(voc.parameters(), lr=budget.lr, betas=(0.8, 0.99), weight_decay=1e-3)
    mel_floor, stft_floor = vocoder_loss_floor(loss_floor)
    mel_cfg: MelConfig = model.config.mel
    hop = mel_cfg.hop_length
    frames = cache.mels.shape[1]
    gen = torch.Generator().manual_seed(seed)
    usable = torch.nonzero(cache.voc_waves.float().abs().amax(-1) > 0).squeeze(1)   # not silence
    draw = vocoder_draw_weights(cache.target_classes()[:len(cache.voc_waves)], usable, focus) if focus else None
    disc = disc_opt = None
    if adversarial > 0:
        from .vocoder_gan import Discriminators, discriminator_loss, generator_losses

        disc = Discriminators(width=disc_width).to(device).train()
        if discriminator is not None and discriminator.is_file():
            disc.load_state_dict(load_file(str(discriminator), device=str(device)))
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=budget.lr, betas=(0.8, 0.99), weight_decay=1e-3)
    disc_partial = None if resume is None else resume.with_name("vocoder.discriminator.partial.safetensors")
    start_step = 0
    if resume is not None and resume.is_file():
        start_step = load_partial(resume, voc, None, opt)
        if disc is not None and disc_partial.is_file():
            load_partial(disc_partial, disc, None, disc_opt)
        gen.manual_seed(seed + start_step)                  # not the first steps' crops again
        print(f"[train] vocoder: resumed at step {start_step} from {resume}", file=sys.stderr)
    last_save = [time.time()]

    def save(steps: int) -> None:
        save_partial(resume, voc, None, opt, start_step + steps)
        if disc is not None:
            save_partial(disc_partial, disc, None, disc_opt, start_step + steps)
        last_save[0] = time.time()

    def step(done):
        if draw is None:
            idx = usable[torch.randint(len(usable), (budget.batch_size,), generator=gen)]
        else:
            idx = usable[torch.multinomial(draw, budget.batch_size, replacement=True, generator=gen)]
        start = torch.randint(frames - crop_frames, (budget.batch_size,), generator=gen)
        mel = torch.stack([cache.mels[i, s:s + crop_frames] for i, s in zip(idx, start)]).float().to(device)
        wave = torch.stack([cache.voc_waves[i, s * hop:(s + crop_frames) * hop]
                            for i, s in zip(idx, start)]).float().to(device)         # (B, crop * hop)
        out = voc(mel)                                                              # (B, ~crop * hop)
        n = min(out.shape[1], wave.shape[1])                        # a preset's upsampling may overshoot
        out, wave = out[:, :n], wave[:, :n]
        mel_l1 = (mel_spectrogram(out, mel_cfg, normalize=False).clamp_min(mel_floor)
                  - mel_spectrogram(wave, mel_cfg, normalize=False).clamp_min(mel_floor)).abs().mean()
        stft = stft_loss(out, wave, per_example=stft_per_example, floor=stft_floor)
        loss = mel_l1 + stft
        extra = {}
        if disc is not None:
            d_loss = discriminator_loss(disc(wave), disc(out.detach()))
            disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(disc.parameters(), 10.0)
            disc_opt.step()
            with torch.no_grad():
                real = disc(wave)
            adv, fm = generator_losses(real, disc(out))
            loss = loss + adversarial * (adv + 2 * fm)
            extra = {"d_loss": d_loss.item(), "adv": adv.item(), "fm": fm.item()}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(voc.parameters(), 10.0)
        opt.step()
        if resume is not None and time.time() - last_save[0] > save_every_s:
            save(done + 1)
        return {"loss": loss.item(), "mel_l1": mel_l1.item(), "stft": stft.item(), **extra}

    fields = ["loss", "mel_l1", "stft"] + (["d_loss", "adv", "fm"] if disc is not None else [])
    metrics = run_loop("vocoder", budget, step, log_path, fields, first_step=start_step)
    if resume is not None:                    # the stage's end: what training.train saves next is this state
        save(metrics["steps"])
    metrics["first_step"] = start_step
    voc.eval()
    if disc is not None and discriminator is not None:
        discriminator.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in disc.state_dict().items()}, str(discriminator))
    return metrics
