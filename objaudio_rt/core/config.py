"""Model configuration: dataclasses with named presets.

`ModelConfig.from_name("audioldm-s")` is the paper's scale (the AudioLDM-S UNet/VAE/HiFi-GAN of
ARCHITECTURE.md, CLAP text, CLIP ViT-B/32); `"tiny"` is the same families at toy size, random
init, for tests; `"tiny-synth"` is the size of the embedded default model trained on SynthScenes.
Each `build()` returns the upstream library's module (diffusers, transformers, open_clip).
Plain Python (the libraries are imported inside `build()`): the command line reads a checkpoint's
settings (`peek_config`) to check its flags before it imports torch.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ObjaudioError, check


@dataclass(frozen=True)
class MelConfig:
    """The log-mel frontend (audio.mel_spectrogram) and the vocoder's rate: AudioLDM's 16 kHz, 64 bins,
    10 ms hop."""
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 160
    win_length: int = 1024
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


@dataclass
class UNetConfig:
    block_out_channels: tuple[int, ...] = (128, 256, 384, 640)
    layers_per_block: int = 2
    attention_head_dim: int = 8
    norm_num_groups: int = 32
    latent_channels: int = 8
    cond_dim: int = 512                  # projection_class_embeddings_input_dim
    sample_size: int = 128

    def build(self):
        from diffusers import UNet2DConditionModel

        n = len(self.block_out_channels)
        return UNet2DConditionModel(
            sample_size=self.sample_size,
            in_channels=self.latent_channels,
            out_channels=self.latent_channels,
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            cross_attention_dim=tuple(self.block_out_channels),
            attention_head_dim=self.attention_head_dim,
            norm_num_groups=self.norm_num_groups,
            class_embed_type="simple_projection",
            projection_class_embeddings_input_dim=self.cond_dim,
            class_embeddings_concat=True,
        )


@dataclass
class VAEConfig:
    block_out_channels: tuple[int, ...] = (128, 256, 512)
    layers_per_block: int = 2
    latent_channels: int = 8
    norm_num_groups: int = 32
    scaling_factor: float = 0.9392935633659363   # AudioLDM-S's learned value; read from checkpoints

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def build(self):
        from diffusers import AutoencoderKL

        n = len(self.block_out_channels)
        return AutoencoderKL(
            in_channels=1, out_channels=1,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(self.block_out_channels),
            layers_per_block=self.layers_per_block,
            latent_channels=self.latent_channels,
            norm_num_groups=self.norm_num_groups,
            scaling_factor=self.scaling_factor,
        )


VOCODER_CONTEXT = 32      # mel frames of context either side of a vocoded block (core/longform.py)


@dataclass
class VocosConfig:
    """A Vocos vocoder (modelio/vocos.py) in place of HiFi-GAN: a ConvNeXt backbone of `num_layers` blocks
    (`dim` wide, `intermediate_dim` inside) at the frame rate, an inverse STFT of `n_fft` points every
    `hop_length` samples (the mel's hop; n_fft a multiple of it)."""
    dim: int = 256
    intermediate_dim: int = 768
    num_layers: int = 8
    n_fft: int = 640
    hop_length: int = 160

    @property
    def reach(self) -> int:
        """Mel frames either side of a frame that its waveform depends on: 3 per k=7 convolution (the
        embedding and each block's), and the frames whose inverse-STFT windows overlap its hop."""
        return 3 * (self.num_layers + 1) + (self.n_fft // self.hop_length + 1) // 2


@dataclass
class VocoderConfig:
    model_in_dim: int = 64
    sampling_rate: int = 16000
    upsample_initial_channel: int = 1024
    upsample_rates: tuple[int, ...] = (5, 4, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8, 4, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    vocos: VocosConfig | None = None     # set: a Vocos vocoder, and the HiFi-GAN fields above are unused

    @property
    def kind(self) -> str:
        return "hifigan" if self.vocos is None else "vocos"

    def hf_config(self):
        from transformers import SpeechT5HifiGanConfig

        if self.vocos is not None:
            raise ObjaudioError("this vocoder is a Vocos (vocoder.vocos is set), not a SpeechT5HifiGan: "
                                "it has no transformers config")

        return SpeechT5HifiGanConfig(
            model_in_dim=self.model_in_dim, sampling_rate=self.sampling_rate,
            upsample_initial_channel=self.upsample_initial_channel,
            upsample_rates=list(self.upsample_rates), upsample_kernel_sizes=list(self.upsample_kernel_sizes),
            resblock_kernel_sizes=list(self.resblock_kernel_sizes),
            resblock_dilation_sizes=[list(d) for d in self.resblock_dilation_sizes],
            normalize_before=False,
        )

    def build(self):
        """The HiFi-GAN; `modelio.vocos.build_vocoder` builds either kind."""
        from transformers import SpeechT5HifiGan

        return SpeechT5HifiGan(self.hf_config())


@dataclass
class ImageEncoderConfig:
    """open_clip vision transformer; patch tokens are projected to `embed_dim` (L)."""
    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    head_width: int = 64
    embed_dim: int = 512
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)   # OpenAI CLIP
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid ** 2

    def build(self):
        from open_clip.model import CLIPVisionCfg, _build_vision_tower

        visual = _build_vision_tower(self.embed_dim, CLIPVisionCfg(
            layers=self.layers, width=self.width, head_width=self.head_width,
            patch_size=self.patch_size, image_size=self.image_size))
        visual.output_tokens = True
        return visual


@dataclass
class TextEncoderConfig:
    """CLAP text tower (transformers ClapTextModelWithProjection, RoBERTa tokenizer)."""
    vocab_size: int = 50265
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 514
    projection_dim: int = 512
    max_length: int = 77

    def hf_config(self):
        from transformers import ClapTextConfig

        return ClapTextConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size, max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
            projection_dim=self.projection_dim, projection_hidden_act="relu")

    def build(self):
        from transformers import ClapTextModelWithProjection

        return ClapTextModelWithProjection(self.hf_config())


@dataclass
class GroundingConfig:
    """The paper's section 3.2 module. `attention` picks the paper's ablation variants."""
    attention: str = "dot"               # "dot" (the paper) | "multihead" | "additive"
    num_heads: int = 1                   # > 1 only with "multihead"
    query_dim: int = 512                 # CLAP text (or audio) embedding size
    token_dim: int = 512                 # CLIP patch-token size L
    key_dim: int = 512                   # d_k
    value_dim: int = 512
    mlp_hidden: int = 1024
    cond_dim: int = 512
    num_patches: int = 49
    query_source: str = "text"           # "text" (the paper) | "audio" (ablation iii; training only)
    mask_rescale: str = "moments"        # "moments" (mean/variance match, the paper) | "sum" (sum to one)

    def __post_init__(self):
        if self.attention not in ("dot", "multihead", "additive"):
            raise ObjaudioError(f"unknown grounding attention {self.attention!r}: use dot, multihead or additive")
        if self.attention != "multihead" and self.num_heads != 1:
            raise ObjaudioError("num_heads > 1 needs attention='multihead'")
        if self.key_dim % self.num_heads or self.value_dim % self.num_heads:
            raise ObjaudioError("key_dim and value_dim must be divisible by num_heads")
        if self.mask_rescale not in ("moments", "sum"):
            raise ObjaudioError(f"unknown mask_rescale {self.mask_rescale!r}: use moments or sum")


@dataclass
class ScheduleConfig:
    """AudioLDM's "linear" schedule: betas = linspace(sqrt(b0), sqrt(b1), T) ** 2."""
    num_train_timesteps: int = 1000
    beta_start: float = 0.0015
    beta_end: float = 0.0195


@dataclass(frozen=True)
class DistilledConfig:
    """A guidance-distilled UNet (Meng et al., 2023; training/distill.py): the checkpoint's UNet takes the
    guidance scale w as an input, the embedding `GuidanceEmbedding(w)` added to every condition row, and
    predicts the teacher's guided eps_u + w (eps_c - eps_u) in one row per step instead of two.
    `cfg_min`..`cfg_max`: the scales it was trained on; `teacher`: the teacher checkpoint's fingerprint."""
    embedding_dim: int = 64            # sinusoidal features of w
    hidden_dim: int = 256
    cfg_min: float = 1.0
    cfg_max: float = 8.0
    teacher: str = ""

    def __post_init__(self):
        if self.embedding_dim % 2 or self.embedding_dim < 2 or self.hidden_dim < 1:
            raise ObjaudioError("distilled.embedding_dim must be even and >= 2, hidden_dim >= 1")
        if not 0.0 <= self.cfg_min <= self.cfg_max:
            raise ObjaudioError(f"distilled cfg range [{self.cfg_min}, {self.cfg_max}] is empty")


@dataclass(frozen=True)
class SilenceGateConfig:
    """The silence gate (core/gate.py, training/silence_gate.py): a small MLP on a selection's grounding
    condition giving p(the selection makes no sound). A condition with p >= `threshold` is silent: a
    selection whose every condition is silent is digital silence, no diffusion run; a composed union
    drops its silent parts. `fit`: what it was fitted on and its held-out confusion (for `objaudio info`)."""
    hidden_dim: int = 64
    threshold: float = 0.5
    fit: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if not isinstance(self.hidden_dim, int) or self.hidden_dim < 1:
            raise ObjaudioError(f"silence_gate.hidden_dim must be an integer >= 1, got {self.hidden_dim!r}")
        if not (isinstance(self.threshold, (int, float)) and 0.0 < self.threshold < 1.0):
            raise ObjaudioError(f"silence_gate.threshold must be a probability in (0, 1), got {self.threshold!r}")


@dataclass
class ModelConfig:
    name: str = "audioldm-s"
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    mel: MelConfig = field(default_factory=MelConfig)
    clip_seconds: float = 10.24          # the length the model was trained on
    max_seconds: float = 30.72           # the longest generation allowed
    default_steps: int = 200
    default_sampler: str = "ddim"
    default_cfg: float = 2.0
    distilled: DistilledConfig | None = None   # a guidance-distilled UNet (one row per step)
    silence_gate: SilenceGateConfig | None = None   # silent selections skip the diffusion (core/gate.py)

    def __post_init__(self):
        self.grounding.num_patches = self.image.num_patches
        self.grounding.token_dim = self.image.embed_dim
        self.grounding.query_dim = self.text.projection_dim
        self.grounding.cond_dim = self.unet.cond_dim
        if self.vocoder.model_in_dim != self.mel.n_mels:
            raise ObjaudioError("vocoder.model_in_dim must equal mel.n_mels")
        vocos = self.vocoder.vocos
        if vocos is not None:
            if vocos.hop_length != self.mel.hop_length:
                raise ObjaudioError(f"vocoder.vocos.hop_length {vocos.hop_length} must equal the mel hop {self.mel.hop_length}")
            if vocos.n_fft % vocos.hop_length or (vocos.n_fft - vocos.hop_length) % 2:
                raise ObjaudioError(f"vocoder.vocos.n_fft {vocos.n_fft} must be a multiple of its hop "
                                    f"{vocos.hop_length} with an even difference, e.g. {4 * vocos.hop_length}")
            if vocos.reach > VOCODER_CONTEXT:
                raise ObjaudioError(f"vocoder.vocos reaches {vocos.reach} mel frames either side, past the "
                                    f"{VOCODER_CONTEXT} frames of context a long clip is vocoded with: give it "
                                    f"fewer layers or a shorter n_fft")
            return
        upsample = 1
        for r in self.vocoder.upsample_rates:
            upsample *= r
        if upsample != self.mel.hop_length:
            raise ObjaudioError(f"vocoder upsampling {upsample} must equal the mel hop {self.mel.hop_length}")

    def latent_shape(self, duration: float) -> tuple[tuple[int, int, int], int]:
        """AudioLDM's rule: frames = duration / hop-time, rounded up to the VAE factor.

        Returns ((C, frames / f, n_mels / f), waveform samples to keep)."""
        frames = int(duration / (self.mel.hop_length / self.mel.sample_rate))
        f = self.vae.downsample_factor
        if frames % f:
            frames = int(math.ceil(frames / f)) * f
        frames = max(frames, f)
        return (self.vae.latent_channels, frames // f, self.mel.n_mels // f), int(duration * self.mel.sample_rate)

    @classmethod
    def from_name(cls, name: str) -> "ModelConfig":
        if name not in PRESETS:
            raise ObjaudioError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
        return PRESETS[name]()

    def to_dict(self) -> dict:
        """Every field; `distilled` and `silence_gate` only when set (so an older model's dict, and its
        fingerprint, are as before)."""
        d = dataclasses.asdict(self)
        for key in ("distilled", "silence_gate"):
            if d[key] is None:
                del d[key]
        if d["vocoder"]["vocos"] is None:          # a HiFi-GAN's dict as before the Vocos kind
            del d["vocoder"]["vocos"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        sub = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in d.items():
            if key not in sub:
                raise ObjaudioError(f"config.json has an unknown field {key!r}: was it written by a newer objaudio?")
            if isinstance(value, dict):
                klass = {"unet": UNetConfig, "vae": VAEConfig, "vocoder": VocoderConfig,
                         "image": ImageEncoderConfig, "text": TextEncoderConfig,
                         "grounding": GroundingConfig, "schedule": ScheduleConfig, "mel": MelConfig,
                         "distilled": DistilledConfig, "silence_gate": SilenceGateConfig}[key]
                kwargs[key] = klass(**{k: v if k == "fit" else VocosConfig(**v) if k == "vocos" and v is not None
                                       else _tuplify(v) for k, v in value.items()})
            else:
                kwargs[key] = value
        return cls(**kwargs)


def _tuplify(v):
    return tuple(_tuplify(x) for x in v) if isinstance(v, list) else v


def _audioldm_s() -> ModelConfig:
    return ModelConfig(name="audioldm-s")


def _tiny() -> ModelConfig:
    """Same families at toy size: random weights build and run in seconds on a CPU."""
    return ModelConfig(
        name="tiny",
        unet=UNetConfig(block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=8,
                        norm_num_groups=8, cond_dim=32, sample_size=32),
        vae=VAEConfig(block_out_channels=(16, 16, 32), layers_per_block=1, norm_num_groups=8, scaling_factor=1.0),
        vocoder=VocoderConfig(upsample_initial_channel=32, upsample_kernel_sizes=(10, 8, 4, 4, 4),
                              resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3),)),
        image=ImageEncoderConfig(image_size=64, patch_size=16, width=32, layers=1, head_width=16, embed_dim=32),
        text=TextEncoderConfig(vocab_size=512, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=80, projection_dim=32, max_length=32),
        grounding=GroundingConfig(key_dim=32, value_dim=32, mlp_hidden=64),
        clip_seconds=1.28, max_seconds=5.12, default_steps=10,
    )


def _tiny_synth() -> ModelConfig:
    """The embedded default model's size: trained from scratch on SynthScenes on a CPU."""
    return ModelConfig(
        name="tiny-synth",
        unet=UNetConfig(block_out_channels=(64, 128, 128), layers_per_block=1, attention_head_dim=8,
                        norm_num_groups=16, cond_dim=64, sample_size=64),
        vae=VAEConfig(block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16, scaling_factor=1.0),
        vocoder=VocoderConfig(upsample_initial_channel=128, upsample_rates=(10, 4, 4), upsample_kernel_sizes=(20, 8, 8),
                              resblock_kernel_sizes=(3, 7), resblock_dilation_sizes=((1, 3), (1, 3))),
        image=ImageEncoderConfig(image_size=112, patch_size=16, width=96, layers=3, head_width=32, embed_dim=64),
        text=TextEncoderConfig(vocab_size=1024, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=128, max_position_embeddings=66, projection_dim=64, max_length=64),
        grounding=GroundingConfig(key_dim=64, value_dim=64, mlp_hidden=128),
        clip_seconds=2.56, max_seconds=10.24, default_steps=20, default_sampler="dpmpp", default_cfg=4.0,
    )


PRESETS = {"audioldm-s": _audioldm_s, "tiny": _tiny, "tiny-synth": _tiny_synth}


ASSETS = Path(__file__).parents[1] / "assets"


def embedded_checkpoint(preset: str) -> str | None:
    """The folder of the embedded model trained at this preset (assets/<preset>), or None."""
    path = ASSETS / preset
    return str(path) if (path / "config.json").is_file() else None


def default_checkpoint() -> str:
    """The embedded default model (`tiny-synth`), or random `tiny` weights (the output says so) in a
    checkout that lacks it."""
    return embedded_checkpoint("tiny-synth") or "random:tiny"


RANDOM = "random:"                     # "random:tiny": random weights, only ever when asked for by name
PATHS = (None, "fewstep", "full")      # ModelSource.parse's `path`: None = the checkpoint's default
FEWSTEP = "fewstep"                    # the sub-folder of a checkpoint's carried few-step path
BASE = ".."                            # the only base a carried path names: the checkpoint folder above it


def fewstep_record(folder: str | os.PathLike) -> dict | None:
    """The "fewstep" record of the few-step path `folder` carries (or, for a carried path itself, its
    own), with "folder" added; None when there is none. Reads config.json only: nothing is verified."""
    folder = Path(folder)
    for candidate in (folder / FEWSTEP, folder):
        try:
            raw = json.loads((candidate / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(raw, dict) and raw.get("base") == BASE and isinstance(raw.get(FEWSTEP), dict):
            return {**raw[FEWSTEP], "folder": str(candidate)}
    return None


@dataclass(frozen=True)
class ModelSource:
    """Which weights a user named, parsed once (`parse`) for the runtime and every exporter alike:

        None                  the embedded default model (`default_checkpoint`)
        random:NAME           random weights at preset NAME (tiny, tiny-synth, audioldm-s), only by that name
        NAME (a preset)       the embedded model trained at that preset (objaudio_rt/assets/NAME), always:
                              a folder of the same name in the working directory is not read
        anything else         a checkpoint folder

    and which of a checkpoint's paths (`path`, issue 20): a folder that carries a few-step path
    (`fewstep/`, modelio.checkpoint.attach_fewstep) whose record says it is the default loads that one;
    "full" loads the folder's own networks (the 20-step two-row path, the command lines' --full), and
    "fewstep" the carried one (--fewstep), an error where there is none. `folder` is the one loaded.
    """
    text: str                          # as the user gave it (the default resolved)
    folder: Path | None = None         # the checkpoint folder loaded (embedded or the user's; or its fewstep/)
    random_preset: str | None = None   # random:NAME
    path: str | None = None            # "fewstep" or "full" where the folder carries a few-step path

    @classmethod
    def parse(cls, text: str | os.PathLike | None, path: str | None = None) -> "ModelSource":
        check(path in PATHS, f"unknown path {path!r}: use one of {', '.join(p for p in PATHS if p)}")
        text = str(text) if text is not None else default_checkpoint()
        if text.startswith(RANDOM):
            name = text[len(RANDOM):]
            if name not in PRESETS:
                raise ObjaudioError(f"{text!r}: no preset {name!r}; random weights come at "
                                    f"{', '.join(RANDOM + p for p in PRESETS)}")
            check(path is None, f"{text} has one path only: leave out --{path}")
            return cls(text, random_preset=name)
        if text in PRESETS:
            folder = embedded_checkpoint(text)
            if folder is None:
                raise ObjaudioError(f"preset {text!r} has no trained weights here: pass '{RANDOM}{text}' "
                                    "for random weights, or a checkpoint folder")
            return cls._with_path(text, Path(folder), path)
        return cls._with_path(text, Path(text), path)

    @classmethod
    def _with_path(cls, text: str, folder: Path, path: str | None) -> "ModelSource":
        """The folder of the path asked for (None: the default one) of the checkpoint in `folder`."""
        record = fewstep_record(folder)
        carried = record is not None and Path(record["folder"]) != folder
        if path is None:
            if carried and record.get("default") is True:
                return cls(text, folder=folder / FEWSTEP, path="fewstep")
            return cls(text, folder=folder, path="full" if carried else None)
        if path == "fewstep":
            check(carried, f"{text} carries no few-step path ({FEWSTEP}/): leave out --fewstep, or attach a "
                           "guidance-distilled student with python -m training.attach_fewstep")
            return cls(text, folder=folder / FEWSTEP, path=path)
        check(record is None or carried, f"{text} is a few-step path: for its full path give the folder above it")
        return cls(text, folder=folder, path=path if carried else None)

    @property
    def is_random(self) -> bool:
        return self.random_preset is not None

    def config(self) -> ModelConfig | None:
        """The model's settings without loading or hashing anything; None where they cannot be read
        (the loader then says why)."""
        if self.is_random:
            return ModelConfig.from_name(self.random_preset)
        try:
            return ModelConfig.from_dict(json.loads((self.folder / "config.json").read_text())["model"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def peek_config(path_or_preset: str | os.PathLike | None, path: str | None = None) -> ModelConfig | None:
    """The model's settings without loading or hashing anything (for checking options early);
    None where they cannot be read (the loader then says why)."""
    try:
        return ModelSource.parse(path_or_preset, path).config()
    except ObjaudioError:
        return None
