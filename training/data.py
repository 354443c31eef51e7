"""Training data: a cached SynthScenes training set, and the JSONL manifest of real clips.

SynthScenes cache (`build_synth_cache`): scenes are generated once (in parallel) and turned into
*examples*, each one (caption, target audio, targeted objects) of a scene:

    kind "mixture"  the scene's caption; target = the mixture; targets = all sounding objects
                    (a scene without sounding objects: caption "silence", silent target)
    kind "single"   in a scene with >= 2 sounding objects, one caption per sounding object naming
                    it alone ("a dog barking"); target = that object's stem. This is the
                    SynthScenes analogue of the paper's caption rephrasing: the grounding
                    attention must pick the named object out of a multi-object scene, which is
                    what object-level selection needs at test time.
    kind "silent"   one silent distractor per scene (tree, house, rock); target = silence. The
                    text caption cannot name it (captions name sounding objects only), so these
                    examples are only used with the mask in place of the attention (train_ldm).
    kind "pair"     (only with `SynthCacheConfig.pairs`) in a scene with >= 3 sounding objects, two
                    of them (drawn from the scene seed) named together; target = the sum of their
                    two stems: a union that is not the whole scene (with the mask substituted: the
                    paper's union mask `Mask(a | b)`).

Stored tensors (one safetensors file + captions in JSON):
    images      (S, H, W, 3) uint8          obj_class   (S, K) int64, -1 = no object
    obj_cover   (S, K, P) float16, each object's area coverage of the P patches
    ex_scene    (E,) int64                  ex_kind     (E,) int64 (index into KINDS)
    ex_targets  (E, K) bool                 mels        (E, frames, n_mels) float16, log-mel
    voc_waves   (V, samples) float16, the peak-normalised waveforms of the first V examples
                (the vocoder's training pairs with mels[:V])
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from objaudio_rt.core.audio import MelConfig, load_wav, mel_spectrogram, normalize_waveform
from objaudio_rt.core.errors import ObjaudioError, check
from objaudio_rt.core.grounding import mask_to_patch_coverage
from objaudio_rt.core.images import load_image
from objaudio_rt.core.threads import use_threads

from .synthscenes import ALL_CLASSES, SILENCE_CAPTION, generate_scene, make_caption, split_seeds

KINDS = ("mixture", "single", "silent", "pair")
MAX_OBJECTS = 5


@dataclass
class SynthCacheConfig:
    scenes: int = 3000
    seed_start: int = 0               # first train-split seed index
    image_size: int = 112
    seconds: float = 2.56
    patch_image_size: int = 112       # the image encoder's input size (masks are pooled at it)
    patch_size: int = 16
    vocoder_examples: int | None = 1500   # the vocoder's waveforms: the first N examples (None: all)
    workers: int = 1
    pairs: bool = False               # add "pair" examples (the targeted fine-tune draws them)

    @property
    def frames(self) -> int:
        """Mel frames kept per clip: seconds * 100, a multiple of the VAE factor (256 for 2.56 s)."""
        return int(round(self.seconds * 100))


def single_caption(seed: int, cls: str) -> str:
    """The caption naming one sounding object alone, deterministic from the scene seed."""
    return make_caption(np.random.default_rng([seed, ALL_CLASSES.index(cls)]), [cls], "overlap")


def _scene_examples(args) -> dict:
    """Everything one scene contributes to the cache (runs in a worker process)."""
    seed, cfg = args
    torch.set_num_threads(1)
    scene = generate_scene(seed, image_size=cfg.image_size, seconds=cfg.seconds)
    n_obj = min(len(scene.classes), MAX_OBJECTS)
    masks = torch.from_numpy(scene.masks[:n_obj].astype(np.float32))               # (N, H, W)
    cover = mask_to_patch_coverage(masks, cfg.patch_image_size, cfg.patch_size) if n_obj else None
    sounding = [i for i in scene.sounding_indices if i < n_obj]
    silence = np.zeros_like(scene.mixture)
    examples = []                                                                   # (kind, caption, objects, wave)
    examples.append(("mixture", scene.caption, sounding, scene.mixture if sounding else silence))
    if len(sounding) >= 2:
        for stem_index, obj in enumerate(scene.sounding_indices):
            if obj < n_obj:
                examples.append(("single", single_caption(seed, scene.classes[obj]), [obj], scene.stems[stem_index]))
    if cfg.pairs and len(sounding) >= 3:
        a, b = sorted(np.random.default_rng([seed, 7]).choice(len(sounding), 2, replace=False))
        stem_of = {obj: k for k, obj in enumerate(scene.sounding_indices)}
        pair = [sounding[a], sounding[b]]
        caption = make_caption(np.random.default_rng([seed, 8]), [scene.classes[i] for i in pair], "overlap")
        examples.append(("pair", caption, pair, scene.stems[stem_of[pair[0]]] + scene.stems[stem_of[pair[1]]]))
    silent = [i for i in range(n_obj) if not scene.sounding[i]]
    if silent:
        examples.append(("silent", SILENCE_CAPTION, [silent[0]], silence))
    waves = torch.from_numpy(np.stack([w for *_, w in examples]))                   # (e, samples)
    waves = torch.where(waves.abs().amax(-1, keepdim=True) > 0, normalize_waveform(waves), waves)
    mels = mel_spectrogram(waves, MelConfig(), normalize=False)[:, :cfg.frames]     # (e, frames, 64)
    obj_class = np.full(MAX_OBJECTS, -1, np.int64)
    obj_class[:n_obj] = [ALL_CLASSES.index(c) for c in scene.classes[:n_obj]]
    obj_cover = np.zeros((MAX_OBJECTS, (cfg.patch_image_size // cfg.patch_size) ** 2), np.float16)
    if n_obj:
        obj_cover[:n_obj] = cover.numpy()
    targets = np.zeros((len(examples), MAX_OBJECTS), bool)
    for e, (_, _, objs, _) in enumerate(examples):
        targets[e, objs] = True
    return {"image": scene.image, "obj_class": obj_class, "obj_cover": obj_cover,
            "kinds": [KINDS.index(k) for k, *_ in examples], "captions": [c for _, c, *_ in examples],
            "targets": targets, "mels": mels.half().numpy(), "waves": waves.half().numpy()}


def build_synth_cache(cfg: SynthCacheConfig, folder: str | os.PathLike, progress: bool = True) -> Path:
    """Generate the training scenes and write `folder/synth.safetensors` + `folder/synth.json`."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seeds = split_seeds("train", cfg.scenes, start=cfg.seed_start)
    jobs = [(s, cfg) for s in seeds]
    if cfg.workers > 1:
        with get_context("spawn").Pool(cfg.workers) as pool:
            parts = list(tqdm(pool.imap(_scene_examples, jobs, chunksize=8), total=len(jobs),
                              desc="synthscenes", disable=not progress))
    else:                          # in this process: _scene_examples pins the one thread a pool worker has,
        threads = torch.get_num_threads()             # which every stage after the cache then ran on (3x slower)
        try:
            parts = [_scene_examples(j) for j in tqdm(jobs, desc="synthscenes", disable=not progress)]
        finally:
            use_threads(threads)
    ex_scene = np.concatenate([np.full(len(p["kinds"]), i) for i, p in enumerate(parts)])
    waves = np.concatenate([p["waves"] for p in parts])
    tensors = {
        "images": torch.from_numpy(np.stack([p["image"] for p in parts])),
        "obj_class": torch.from_numpy(np.stack([p["obj_class"] for p in parts])),
        "obj_cover": torch.from_numpy(np.stack([p["obj_cover"] for p in parts])),
        "ex_scene": torch.from_numpy(ex_scene),
        "ex_kind": torch.from_numpy(np.concatenate([p["kinds"] for p in parts])),
        "ex_targets": torch.from_numpy(np.concatenate([p["targets"] for p in parts])),
        "mels": torch.from_numpy(np.concatenate([p["mels"] for p in parts])),
        "voc_waves": torch.from_numpy(waves[:cfg.vocoder_examples].copy()),
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "synth.safetensors"))
    captions = [c for p in parts for c in p["captions"]]
    (folder / "synth.json").write_text(json.dumps({"seeds": seeds, "captions": captions}))
    return folder


class SynthCache:
    """The cached training set in memory (see the module docstring for the fields)."""

    def __init__(self, folder: str | os.PathLike):
        folder = Path(folder)
        t = load_file(str(folder / "synth.safetensors"))
        meta = json.loads((folder / "synth.json").read_text())
        self.images, self.obj_class, self.obj_cover = t["images"], t["obj_class"], t["obj_cover"].float()
        self.ex_scene, self.ex_kind, self.ex_targets = t["ex_scene"], t["ex_kind"], t["ex_targets"]
        self.mels, self.voc_waves = t["mels"], t["voc_waves"]
        self.captions: list[str] = meta["captions"]
        self.seeds: list[int] = meta["seeds"]

    @property
    def num_examples(self) -> int:
        return int(self.ex_scene.numel())

    def target_coverage(self) -> torch.Tensor:
        """(E, P) patch coverage of each example's targeted objects (union = max); zeros if none."""
        cover = self.obj_cover[self.ex_scene]                                        # (E, K, P)
        return (cover * self.ex_targets[..., None]).amax(dim=1)

    def target_classes(self) -> torch.Tensor:
        """(E, C) multi-hot of each example's targeted sounding classes (C = len(ALL_CLASSES))."""
        cls = self.obj_class[self.ex_scene]                                          # (E, K)
        hot = torch.zeros(self.num_examples, len(ALL_CLASSES))
        rows, cols = torch.nonzero(self.ex_targets & (cls >= 0), as_tuple=True)
        hot[rows, cls[rows, cols]] = 1.0
        hot[self.ex_kind == KINDS.index("silent")] = 0.0
        return hot

    def patch_labels(self, background: int) -> torch.Tensor:
        """(S, P) int64 class of each patch: the object covering most of it (>= 25 %), else `background`."""
        cover, idx = self.obj_cover.max(dim=1)                                       # (S, P)
        labels = torch.gather(self.obj_class, 1, idx)
        return torch.where(cover >= 0.25, labels, torch.full_like(labels, background))


# --------------------------------------------------------------------------------------------
# Real data: a JSONL manifest
# --------------------------------------------------------------------------------------------

@dataclass
class ManifestItem:
    image: Path          # an image or a video frame
    audio: Path
    caption: str


def read_manifest(path: str | os.PathLike) -> list[ManifestItem]:
    """One JSON object per line: {"image": path, "audio": path, "caption": text}; relative paths
    are relative to the manifest's folder. Blank lines are skipped."""
    path = Path(path)
    check(path.is_file(), f"manifest not found: {path}")
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            image, audio, caption = row["image"], row["audio"], row["caption"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ObjaudioError(f"{path}:{n}: need a JSON object with image, audio and caption ({exc})") from None
        check(isinstance(caption, str) and caption.strip(), f"{path}:{n}: empty caption")
        items.append(ManifestItem(path.parent / image, path.parent / audio, caption))
    check(len(items) > 0, f"manifest {path} has no items")
    return items


def load_clip_audio(path: str | os.PathLike, seconds: float, sample_rate: int = 16000) -> torch.Tensor:
    """16 kHz mono, zero-padded or truncated to `seconds`. Returns (samples,) float32."""
    wave = load_wav(path, sample_rate)
    n = int(round(seconds * sample_rate))
    return torch.nn.functional.pad(wave[:n], (0, max(0, n - wave.numel())))


def load_item(item: ManifestItem, seconds: float, frames: int) -> tuple[np.ndarray, torch.Tensor]:
    """(image (H, W, 3) uint8, log-mel (frames, n_mels)) of one manifest item, AudioLDM's frontend."""
    wave = load_clip_audio(item.audio, seconds)
    mel = mel_spectrogram(wave, MelConfig())[0, :frames]                             # (frames, 64)
    return load_image(str(item.image)), mel
