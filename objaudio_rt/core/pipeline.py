"""The object-aware generation pipeline, readable top to bottom:

    image -> CLIP patch tokens -> selection (mask / SAM / text attention) -> patch weights
          -> grounding condition c = MLP(m V) -> guided denoising loop -> latent
          -> VAE decoder -> log-mel -> HiFi-GAN -> waveform
"""
from __future__ import annotations

import dataclasses
import functools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..backends import make_backend, resolve_backend
from .denoise import Conditions, denoise, guided_loop
from ..modelio.encoders import preprocess_pixels, tokenize_texts
from .errors import ObjaudioError, check
from .grounding import mask_to_patch_coverage, rescale_patch_weights
from .gate import SILENT_LOG_MEL
from .guidance import APG
from .images import load_image, load_mask
from .config import ModelSource
from .longform import (CONTEXT, MelAssembly, Windows, WindowedUNet, decode_windows, noise_levels, plan_sequential,
                       sequential_latents, span_ready, vocode_blocks, vocode_span, vocoder_size, vocoder_spans)
from ..modelio.model import Calibration, GraphModel, ObjaudioModel
from .options import GRAPH_BACKENDS, UNION_MODES, RunOptions
from .samplers import DeviceTables, SamplerPlan, alphas_cumprod
from .selection import Box, Mask, Points, Selection, Text, Whole

@dataclass
class Scene:
    """One encoded image: its pixels, CLIP patch tokens and (lazily) its SAM embedding."""
    image: np.ndarray                  # (H, W, 3) uint8 RGB
    tokens: torch.Tensor               # (1, P, L) float32 on the pipeline's device
    sam: object | None = field(default=None, repr=False)

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


Part = tuple[torch.Tensor, "np.ndarray | None"]   # one condition: (patch weights (H, P), pixel mask or None)


@dataclass
class Conditioned:
    """The conditions of a batch of selections (`Pipeline.conditions`): the guided loop's rows, and per
    item the (patch weights, pixel mask) its Generation shows (a composed union: `combine_parts`).
    `silent`: per item, whether the silence gate made it digital silence (core/gate.py); the rows are
    those of the other items (`kept`), in order, and None when every item is silent."""
    conditions: Conditions | None
    shown: list[Part]
    silent: list[bool] = field(default_factory=list)

    @property
    def kept(self) -> list[int]:
        """The items the rows belong to (those the gate did not silence), in order."""
        return [i for i in range(len(self.shown)) if not (self.silent and self.silent[i])]

    @property
    def items(self) -> int:
        return len(self.shown)


@dataclass
class AudioStream:
    """A generation handed out block by block (`Pipeline.stream`): iterate for (B, n) float32 blocks on the
    CPU, `samples` in all (one period, for a loop, starting `origin` samples into it)."""
    samples: int
    loop: bool
    origin: int
    windows: Windows | None                 # the windows made in order; None: generated whole
    blocks: object = field(repr=False)

    def __iter__(self):
        return iter(self.blocks)


@dataclass
class Generation:
    wave: torch.Tensor                 # (T,) float32, 16 kHz mono, on the CPU
    mel: torch.Tensor                  # (frames, n_mels) float32 log-mel that the vocoder heard
    weights: torch.Tensor              # (P,) or (H, P) patch weights that replaced the attention
                                       # (a composed union: the elementwise max of its parts')
    mask: np.ndarray | None            # (H, W) pixel mask of the selection; None for text alone
    sample_rate: int
    seed: int
    steps: int
    sampler: str
    cfg: float
    loop: bool = False                 # the waveform's end flows into its start (longform.py)
    silent: bool = False               # the model's silence gate made it digital silence (core/gate.py)


class Pipeline:
    def __init__(self, model: ObjaudioModel | GraphModel, calibration: Calibration, device: str | torch.device = "cpu",
                 backend: str = "eager", sam_checkpoint: str | os.PathLike | None = None,
                 source: str = "random", union: str = UNION_MODES[0], backend_options: dict | None = None,
                 sam_type: str | None = None):
        """backend: one of backends.BACKENDS; backend_options: that backend's options
        (backends.backend_options(name), e.g. unet_dtype="fp16" for fast). A GraphModel (a checkpoint
        without its networks) serves the graph backends; the networks are then loaded only if `model`
        is asked for."""
        check(union in UNION_MODES, f"unknown union mode {union!r}: use one of {', '.join(UNION_MODES)}")
        self.union = union
        self.config = model.config
        self.calibration = calibration
        self.device = _resolve_device(device)
        self.backend = make_backend(backend, model, self.device, **(backend_options or {}))
        self._model = model if isinstance(model, ObjaudioModel) else None
        self._graph_model = model if isinstance(model, GraphModel) else None
        self._model_lock = threading.Lock()    # loads the networks (or the tokenizer) once
        self._tokenizer = None
        self.source = source
        self._sam_checkpoint = sam_checkpoint
        self._sam_type = sam_type
        self._segmenter = None
        self._sam_lock = threading.Lock()      # builds the segmenter and each scene's SAM embedding once

    @property
    def model(self) -> ObjaudioModel:
        """The PyTorch networks (for save_pretrained, training and tools), loaded on first use when the
        pipeline was built for a graph backend."""
        with self._model_lock:
            if self._model is None:
                from ..modelio.checkpoint import load_checkpoint

                self._model, _ = load_checkpoint(self._graph_model.folder)
            return self._model

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """CLAP token ids of `texts`: the model's tokenizer, or the checkpoint's (loaded once) for a graph backend."""
        if self._model is not None:
            return self._model.text_encoder.tokenize(texts, self.device)
        with self._model_lock:
            if self._tokenizer is None:
                from ..modelio.encoders import load_tokenizer

                self._tokenizer = load_tokenizer(Path(self._graph_model.folder) / "tokenizer")
        return tokenize_texts(self._tokenizer, self.config.text, texts, self.device)

    @property
    def can_segment(self) -> bool:
        """Whether points and boxes can be resolved: a SAM checkpoint was given (loaded on first use)."""
        return self._sam_checkpoint is not None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_preset: str | os.PathLike | ModelSource | None = None, device: str = "cpu",
                        backend: str = "eager", sam_checkpoint: str | os.PathLike | None = None,
                        seed: int = 0, union: str = UNION_MODES[0], backend_options: dict | None = None,
                        sam_type: str | None = None, path: str | None = None, many_clips: bool = False) -> "Pipeline":
        """A checkpoint folder; the embedded model by its preset name (`tiny-synth`); or random weights,
        only when asked for by name: `random:tiny`, `random:tiny-synth`, `random:audioldm-s` (from `seed`).
        `path`: which of a checkpoint's paths, where it carries a few-step one (ModelSource): None its
        default, "full" its own 20-step networks, "fewstep" the carried guidance-distilled UNet.

        None means the embedded default model (objaudio_rt/assets/tiny-synth). `source` says which.
        backend "auto" picks the fastest one ready here (backends.resolve_backend; `many_clips`: for a
        process that generates clip after clip, where start-up counts once); `backend_name` says which.
        A graph backend on a checkpoint folder loads no PyTorch network (checkpoint.load_graph_model).
        """
        from ..modelio.artifacts import model_fingerprint
        from ..modelio.checkpoint import load_checkpoint, load_graph_model
        from .config import ModelConfig, ModelSource

        if isinstance(path_or_preset, ModelSource):
            check(path is None, "give the path in the ModelSource (ModelSource.parse(text, path)), not beside it")
            src = path_or_preset
        else:
            src = ModelSource.parse(path_or_preset, path)
        dev = _resolve_device(device)
        options = dict(device=dev, sam_checkpoint=sam_checkpoint, union=union, backend_options=backend_options,
                       sam_type=sam_type)
        if src.is_random:
            config = ModelConfig.from_name(src.random_preset)
            model = ObjaudioModel.random(config, seed)
            return cls(model, Calibration.uncalibrated(config.image.num_patches),
                       backend=resolve_backend(backend, dev, lambda: model_fingerprint(model), backend_options,
                                               many_clips),
                       source=f"{src.text}:seed{seed} (random weights)", **options)
        graph_model = functools.cache(lambda: load_graph_model(src.folder))   # read once, only if needed
        backend = resolve_backend(backend, dev, lambda: graph_model()[0].fingerprint, backend_options, many_clips)
        model, calibration = graph_model() if backend in GRAPH_BACKENDS else load_checkpoint(src.folder)
        return cls(model, calibration, backend=backend, source=str(src.folder), **options)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def save_pretrained(self, folder: str | os.PathLike, force: bool = False) -> Path:
        from ..modelio.checkpoint import save_checkpoint

        return save_checkpoint(self.model, self.calibration, folder, force=force)

    # ---- 1. image -> patch tokens -------------------------------------------------------
    def encode_image(self, image) -> Scene:
        """A path, PIL image or (H, W, 3) array -> Scene with CLIP patch tokens cached."""
        arr = load_image(image)
        pixels = preprocess_pixels(self.config.image, torch.from_numpy(arr)[None], self.device)   # (1, 3, S, S)
        return Scene(arr, self.backend.image_tokens(pixels))

    # ---- 2. selection -> patch weights -------------------------------------------------
    def select(self, scene: Scene, selection: Selection | None) -> tuple[torch.Tensor, np.ndarray | None]:
        """Patch weights (H, P) that replace the attention, and the pixel mask (or None for text alone).

        Masks, points, boxes and the whole scene are unioned at pixel level, pooled onto the patch
        grid and rescaled to the attention's mean and variance. Text alone uses the learned
        attention itself. Text with masks: the union of the pooled mask and the attention map
        (each scaled to a peak of 1) is rescaled like a mask.
        """
        parts = (selection or Whole()).parts()
        pixel = None
        texts = []
        for part in parts:
            if isinstance(part, Text):
                texts.append(part.text)
                continue
            m = self._pixel_mask(scene, part)
            pixel = m if pixel is None else np.maximum(pixel, m)
        attn = None
        if texts:
            q = self.backend.text_embeds(**self._tokenize(texts))                                 # (N, Lq)
            attn = self.backend.text_attention(q, scene.tokens)                                   # (N, H, P)
            attn = attn.amax(dim=0) if len(texts) > 1 else attn[0]
            if pixel is None and len(texts) == 1:
                return attn.detach(), None
            attn = attn / attn.amax(dim=-1, keepdim=True)
        coverage = None
        if pixel is not None:
            coverage = mask_to_patch_coverage(torch.from_numpy(pixel)[None].to(self.device),
                                              self.config.image.image_size, self.config.image.patch_size)
        if attn is None:
            union = coverage                                                    # (1, P)
        else:
            union = attn if coverage is None else torch.maximum(attn, coverage)  # (H, P)
        weights = rescale_patch_weights(union, self.calibration.attn_std, self.config.grounding.mask_rescale)
        return weights.detach(), pixel

    def _pixel_mask(self, scene: Scene, part: Selection) -> np.ndarray:
        h, w = scene.size_hw
        if isinstance(part, Whole):
            return np.ones((h, w), np.float32)
        if isinstance(part, Mask):
            return load_mask(part.mask, (h, w))
        if isinstance(part, Points):
            part.check_inside((h, w))
            pts = np.array(part.coords, np.float32)
            labels = np.array(part.labels if part.labels is not None else [1] * len(pts), np.int64)
            mask = self._sam(scene).predict(scene.sam, points=pts, labels=labels)
        elif isinstance(part, Box):
            part.check_inside((h, w))
            mask = self._sam(scene).predict(scene.sam, box=np.array(part.box, np.float32))
        else:
            raise ObjaudioError(f"unknown selection type {type(part).__name__}")
        check(mask.any(), "Segment Anything found no object at that point or box: click on the object itself")
        return mask.astype(np.float32)

    def _sam(self, scene: Scene):
        """The segmenter, and the scene's SAM embedding computed once; safe from several threads
        (SamSegmenter serializes its own predictions)."""
        from ..modelio.sam import NEED_SAM, SamSegmenter, load_sam

        with self._sam_lock:
            if self._segmenter is None:
                check(self._sam_checkpoint is not None, NEED_SAM)
                self._segmenter = SamSegmenter(load_sam(self._sam_checkpoint, self._sam_type, device=str(self.device)))
            if scene.sam is None:
                scene.sam = self._segmenter.embed(scene.image)          # cached per image
        return self._segmenter

    # ---- 3. patch weights -> condition ---------------------------------------------------
    @torch.no_grad()
    def condition(self, scene: Scene, weights: torch.Tensor) -> torch.Tensor:
        """c = MLP(weights V): (1, cond_dim)."""
        return self.backend.grounding_condition(weights[None], scene.tokens)

    # ---- 3b. selections -> the guided loop's condition rows ------------------------------
    def parts(self, scene: Scene, selection: Selection | None, union: str) -> list[Part]:
        """The (patch weights, pixel mask) of each condition of one selection: one for a single part
        or union="mask", one per part for a composed union (`conditions_per_item` counts them)."""
        if conditions_per_item(selection, union) == 1:
            return [self.select(scene, selection)]
        return [self.select(scene, part) for part in (selection or Whole()).parts()]

    @torch.no_grad()
    def conditions(self, scene: Scene, selections: list[Selection | None], union: str | None = None,
                   silence_gate: bool | None = None) -> Conditioned:
        """The conditions of a batch of selections of one scene: the guided loop's rows (each item's
        parts with weights 1 / parts, `denoise.Conditions`) and what each item's Generation shows.
        `silence_gate` (default: on where the model has one): the gate's silent parts leave a composed
        union, and an item left with none is silent and has no rows (core/gate.py, Conditioned.silent)."""
        union = union or self.union
        check(union in UNION_MODES, f"unknown union mode {union!r}: use one of {', '.join(UNION_MODES)}")
        check(len(selections) > 0, "give at least one selection")
        if union == "mix":                 # one part a selection: the same rows as "compose"
            check(all(conditions_per_item(s, union) == 1 for s in selections),
                  "union mix generates each part as its own selection: give the parts (mix_parts), then sum "
                  "their generations (mix_generations), as generate_batch does")
            union = "compose"
        gated = self.config.silence_gate is not None if silence_gate is None else silence_gate
        check(not gated or self.backend.silence_gate is not None,
              "this checkpoint has no silence gate: leave silence_gate unset (or false)")
        groups = [self.parts(scene, s, union) for s in selections]                      # per item: [Part]
        conds = [torch.cat([self.condition(scene, w) for w, _ in g]) for g in groups]   # per item: (k, cond_dim)
        silent = [False] * len(conds)
        if gated:
            flags = iter(self.backend.silent_rows(torch.cat(conds)))
            for i, c in enumerate(conds):
                keep = [r for r in range(len(c)) if not next(flags)]
                silent[i] = not keep
                conds[i] = c[keep]
        conds = [c for c, s in zip(conds, silent) if not s]
        if not conds:
            rows = None
        elif all(len(c) == 1 for c in conds):
            rows = Conditions.single(torch.cat(conds))                                  # one row of weight 1 each
        else:
            owner = torch.cat([torch.full((len(c),), i) for i, c in enumerate(conds)])  # (R,) item of each row
            weights = torch.cat([torch.full((len(c),), 1.0 / len(c)) for c in conds])   # (R,) 1 / parts
            rows = Conditions.composed(torch.cat(conds), owner, weights, len(conds))
        return Conditioned(rows, [combine_parts(g) for g in groups], silent)

    # ---- 4. conditions -> latent ----------------------------------------------------------
    @torch.no_grad()
    def sample(self, conditions: Conditioned | Conditions, run: RunOptions, progress: bool = True,
               guidance=None) -> torch.Tensor:
        """The final latent (B, C, T/4, M/4) of the guided loop from each item's own noise: a generator
        seeded with `run.seed`, so an item's result does not depend on what else is in the batch.
        A loop, or a clip past the model's max_seconds, is denoised over overlapping windows of the
        model's clip length (`windows`, longform.py). `run` is resolved here unless it already is.
        guidance: a guidance.APG in place of classifier-free guidance's update (default: run.guidance's).
        Of a Conditioned with silent items (the silence gate), the latents of the others (`kept`) only."""
        run = run.resolve(self.config, self.union)                                  # as it is if resolved
        rows = conditions.conditions if isinstance(conditions, Conditioned) else conditions
        if rows is None:                                                            # every item silent
            return torch.zeros((0, *self.latent_shape(run.duration)[0]), device=self.device)
        plan = SamplerPlan.build(run.sampler, run.steps, self.config.schedule)
        noise = self.noise(run, rows.items)                                         # (B, C, T/4, M/4)
        windows = self.windows(run)
        backend = self.backend if windows is None else WindowedUNet(self.backend, windows)
        return denoise(backend, noise, rows, plan, run.cfg, progress=progress, guidance=guidance or guidance_of(run))

    def noise(self, run: RunOptions, items: int) -> torch.Tensor:
        """(B, C, T/4, M/4) initial latents on the device: each item's from a generator seeded with run.seed."""
        shape, _ = self.latent_shape(run.duration)
        return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(run.seed))
                            for _ in range(items)]).to(self.device)

    def windows(self, run: RunOptions) -> Windows | None:
        """The latent windows of a loop or of a clip past the model's max_seconds (None: one pass)."""
        run = run.resolve(self.config, self.union)
        if not run.loop and run.duration <= self.config.max_seconds:
            return None
        (_, frames, _), _ = self.latent_shape(run.duration)
        clip = self.latent_shape(self.config.clip_seconds)[0][1]                   # the trained length
        return Windows.plan(frames, clip, run.loop)

    # ---- 5-6. latent -> log-mel -> waveform -------------------------------------------------
    @torch.no_grad()
    def audio(self, z: torch.Tensor, run: RunOptions | float) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-mel (B, frames, n_mels) on the device, waveform (B, samples) on the CPU) of latents z,
        the waveform cut to the run's duration (`latent_shape`; a loop keeps whole latent frames, its
        period). A windowed run (`windows`) decodes window by window and vocodes block by block
        (`audio_blocks`). `run` may be a plain duration in seconds (one pass)."""
        if not isinstance(run, RunOptions):
            run = RunOptions(duration=float(run))
        if len(z) == 0:                                                             # every item silent
            return self.silent_mel(run, 0), torch.zeros((0, self.stream_samples(run)))
        mel, blocks = self.audio_blocks(z, run)
        wave = torch.cat(list(blocks), dim=1)
        check(bool(torch.isfinite(wave).all()), "generation produced NaN or inf samples: the checkpoint "
                                                 "may be damaged; try --backend eager or another checkpoint")
        return mel, wave

    @torch.no_grad()
    def audio_blocks(self, z: torch.Tensor, run: RunOptions):
        """(log-mel (B, frames, n_mels), an iterator of waveform blocks (B, samples) on the CPU in order):
        what `audio` joins. A windowed latent is decoded window by window and vocoded in spans of the
        window's length (longform.vocoder_spans)."""
        run = run.resolve(self.config, self.union)
        windows = self.windows(run)
        f, hop = self.config.vae.downsample_factor, self.config.mel.hop_length
        if windows is None:
            mel = self.backend.decode(z)                                              # (B, T, n_mels)
            size = mel.shape[1]
        else:
            mel = decode_windows(self.backend, z, windows, f)
            size = vocoder_size(windows, f)
        return mel, self._kept(vocode_blocks(self.backend, mel, size, run.loop, hop), self.stream_samples(run))

    def silent_mel(self, run: RunOptions, items: int) -> torch.Tensor:
        """(items, frames, n_mels) log-mel of digital silence at the length `audio` decodes for `run`."""
        run = run.resolve(self.config, self.union)
        frames = self.latent_shape(run.duration)[0][1] * self.config.vae.downsample_factor
        return torch.full((items, frames, self.config.mel.n_mels), SILENT_LOG_MEL, device=self.device)

    def stream_samples(self, run: RunOptions) -> int:
        """The samples a generation (or one period of a loop) holds: the duration's for a clip, whole
        latent frames for a loop."""
        run = run.resolve(self.config, self.union)
        (_, frames, _), keep = self.latent_shape(run.duration)
        return frames * self.config.vae.downsample_factor * self.config.mel.hop_length if run.loop else keep

    @staticmethod
    def _kept(blocks, keep: int):
        """The blocks (B, n) on the CPU, cut after `keep` samples in all."""
        done = 0
        for wave in blocks:
            wave = wave[:, :max(0, keep - done)].cpu()
            done += wave.shape[1]
            if wave.shape[1]:
                yield wave

    # ---- 4-6 as a stream: the first samples before the last window is denoised ------------------
    @torch.no_grad()
    def stream(self, conditions: Conditioned | Conditions, run: RunOptions) -> "AudioStream":
        """The generation of `conditions` as waveform blocks (B, samples) handed out in order as soon as
        they are final. A long clip or a loop (`windows`) is denoised window after window
        (longform.plan_sequential), each window's frames already made by the windows before it held
        (longform.Held), then decoded and vocoded as far as it is final: the first samples of a long
        clip come after one window, not the whole clip. This differs from `sample`, which denoises
        the windows jointly. A loop's stream starts at `AudioStream.origin` (samples into the loop:
        the first point the first window alone decides) and one period of it is `samples` long.
        Anything else (one pass, or a loop too short to be made in order) is generated whole, then
        handed out."""
        run = run.resolve(self.config, self.union)
        rows = conditions.conditions if isinstance(conditions, Conditioned) else conditions
        samples = self.stream_samples(run)
        if isinstance(conditions, Conditioned) and len(conditions.kept) < conditions.items:
            return self._gated_stream(conditions, run, samples)
        windows = self.windows(run)
        (_, frames, _), _ = self.latent_shape(run.duration)
        seq = None if windows is None else plan_sequential(frames, windows.size, run.loop)
        if seq is None:
            return AudioStream(samples, run.loop, 0, None, self._whole(rows, run))
        f, hop = self.config.vae.downsample_factor, self.config.mel.hop_length
        origin = ((seq.starts[-1] + seq.size - seq.total) * f + CONTEXT) if run.loop else 0
        return AudioStream(samples, run.loop, origin * hop, seq, self._kept(self._in_order(rows, run, seq, origin), samples))

    def _gated_stream(self, conditions: Conditioned, run: RunOptions, samples: int) -> "AudioStream":
        """The stream of a batch with silent items (the silence gate): the others' stream, zeros in the
        silent items' rows; all silence, in blocks of a second, when every item is silent."""
        kept, items = conditions.kept, conditions.items
        if not kept:
            block = self.config.mel.sample_rate
            zeros = (torch.zeros((items, min(block, samples - s))) for s in range(0, samples, block))
            return AudioStream(samples, run.loop, 0, None, zeros)
        inner = self.stream(Conditioned(conditions.conditions, [conditions.shown[i] for i in kept]), run)

        def scatter():
            for block in inner:
                full = torch.zeros((items, block.shape[1]), dtype=block.dtype)
                full[kept] = block
                yield full
        return AudioStream(inner.samples, inner.loop, inner.origin, inner.windows, scatter())

    def _whole(self, rows: Conditions, run: RunOptions):
        z = self.sample(rows, run, progress=False)
        yield from self.audio_blocks(z, run)[1]

    def _in_order(self, rows: Conditions, run: RunOptions, seq: Windows, origin: int):
        dev = self.device
        plan = SamplerPlan.build(run.sampler, run.steps, self.config.schedule)
        tables = DeviceTables.upload(plan, dev)
        cfg = torch.full((1,), float(run.cfg), dtype=torch.float32, device=dev)
        cond = rows.to(dev)
        levels = noise_levels(plan.timesteps.tolist(), alphas_cumprod(self.config.schedule))
        f, hop = self.config.vae.downsample_factor, self.config.mel.hop_length
        size = vocoder_size(seq, f)
        mel = MelAssembly(seq, f)
        spans = vocoder_spans(seq.total * f, size, run.loop, origin)

        def run_window(x, held):
            return guided_loop(self.backend, x, cond, tables, cfg, held=held, guidance=guidance_of(run))

        for k, z in sequential_latents(run_window, self.noise(run, rows.items), seq, levels):
            mel.add(self.backend, z, k)
            final = mel.final()
            while spans and span_ready(spans[0], size, final, run.loop):
                yield vocode_span(self.backend, mel.mel, spans.pop(0), size, run.loop, hop)

    # ---- all of it ------------------------------------------------------------------------
    def generate(self, scene: Scene, selection: Selection | None = None, **options) -> torch.Tensor:
        """Waveform (T,) float32 at 16 kHz for the selected objects. Options as `generate_many`."""
        return self.generate_many(scene, [selection], **options)[0].wave

    def generate_many(self, scene: Scene, selections: list[Selection | None], steps: int | None = None,
                      sampler: str | None = None, cfg: float | None = None, seed: int = 0,
                      duration: float | None = None, progress: bool = True,
                      union: str | None = None, loop: bool = False, guidance: str | None = None,
                      silence_gate: bool | None = None) -> list[Generation]:
        """One batched generation for several selections of one scene (e.g. clicking through objects):
        `conditions`, then `sample`, then `audio`.

        `union` (default: the pipeline's, "mix") says how a union `A | B` is generated: "mix"
        generates each part alone, at full guidance and from the same noise, and sums their
        waveforms (`mix_generations`): `A | B` is exactly what `A` and `B` sound like alone, played
        together; "compose" conditions on each part separately and averages their guidance
        directions in one pass (denoise.py); "mask" is the paper's single union mask (the parts'
        pixel masks unioned, one condition). A selection of one part is the same in every mode.

        `duration` may pass the model's max_seconds (up to options.MAX_SECONDS) and `loop` makes the
        clip's end flow into its start: both denoise one latent over overlapping windows (longform.py).
        `guidance`: "cfg" (default, the paper's) or "apg" (adaptive projected guidance, guidance.py).
        `silence_gate`: the model's silence gate (default: on where it has one; False is the paper's
        behaviour): a selection it calls silent is digital silence, no diffusion run (core/gate.py).
        """
        return self.generate_batch(scene, selections,
                                   RunOptions(steps, sampler, cfg, seed, duration, union, loop, guidance,
                                              silence_gate),
                                   progress=progress)

    def generate_batch(self, scene: Scene, selections: list[Selection | None], run: RunOptions,
                       progress: bool = True) -> list[Generation]:
        """`generate_many` with its options as one `RunOptions` (what the CLI and the service parse)."""
        run = run.resolve(self.config, self.union)
        if run.union == "mix" and any(conditions_per_item(s, "mix") > 1 for s in selections):
            parts, owner = mix_parts(selections)
            gens = self.generate_batch(scene, parts, dataclasses.replace(run, union="compose"), progress)
            return [mix_generations([g for g, o in zip(gens, owner) if o == i]) for i in range(len(selections))]
        batch = self.conditions(scene, selections, run.union, run.silence_gate)
        z = self.sample(batch, run, progress=progress)                             # the kept items'
        mel, wave = self.audio(z, run)
        if len(batch.kept) < batch.items:                                          # silent items: zeros
            full_mel = self.silent_mel(run, batch.items).to(mel.dtype)
            full_wave = torch.zeros((batch.items, self.stream_samples(run)), dtype=wave.dtype)
            full_mel[batch.kept], full_wave[batch.kept] = mel, wave
            mel, wave = full_mel, full_wave
        return [Generation(wave[i], mel[i].cpu(), w.cpu(), m, self.config.mel.sample_rate, run.seed, run.steps,
                           run.sampler, run.cfg, run.loop, bool(batch.silent and batch.silent[i]))
                for i, (w, m) in enumerate(batch.shown)]

    def latent_shape(self, duration: float) -> tuple[tuple[int, int, int], int]:
        """((C, frames / f, n_mels / f), waveform samples to keep): ModelConfig.latent_shape."""
        return self.config.latent_shape(duration)


def guidance_of(run: RunOptions) -> APG | None:
    """The guided loop's guidance for run.guidance: None for classifier-free guidance."""
    return APG() if run.guidance == "apg" else None


def conditions_per_item(selection: Selection | None, union: str) -> int:
    """How many condition rows a selection runs (the one union rule; the service batches by it):
    a composed or mixed union one per part, anything else one."""
    return len((selection or Whole()).parts()) if union in ("compose", "mix") else 1


def mix_parts(selections: list[Selection | None]) -> tuple[list[Selection | None], list[int]]:
    """Union "mix": every selection's parts as selections of their own, and the selection each came from."""
    parts, owner = [], []
    for i, selection in enumerate(selections):
        mine = selection.parts() if selection is not None else (None,)          # None: the whole scene
        parts += mine
        owner += [i] * len(mine)
    return parts, owner


def mix_generations(parts: list[Generation]) -> Generation:
    """One selection of union "mix" from its parts' generations: the waveforms summed, the log-mels summed
    as power (log-sum-exp: what the sum sounds like, not one the vocoder heard), the patch weights and
    pixel masks as `combine_parts` shows a composed union's; silent when every part is."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    weights, mask = combine_parts([(g.weights, g.mask) for g in parts])
    return dataclasses.replace(first, wave=torch.stack([g.wave for g in parts]).sum(0),
                               mel=torch.logsumexp(torch.stack([g.mel for g in parts]), dim=0),
                               weights=weights, mask=mask, silent=all(g.silent for g in parts))


def combine_parts(parts: list[Part]) -> Part:
    """What a Generation shows of a composed union: the parts' patch weights (elementwise max,
    for display) and the union of their pixel masks."""
    weights, pixel = parts[0]
    for w, m in parts[1:]:
        weights = torch.maximum(weights, w)
        pixel = m if pixel is None else (pixel if m is None else np.maximum(pixel, m))
    return weights, pixel


def _resolve_device(device: str | torch.device) -> torch.device:
    check(str(device).split(":")[0] in ("cpu", "cuda"), f"unknown device {device!r}: use cpu or cuda")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ObjaudioError("CUDA is not available on this machine: use --device cpu")
    return device
