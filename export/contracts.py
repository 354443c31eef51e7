"""One export contract per network, in the style of NVIDIA's TensorRT diffusion demo.

A `Contract` names the torch module to export (a thin wrapper that gives the graph exactly the
inputs and outputs the runtime feeds and reads), its tensors with symbolic dims, the min/opt/max
value of every symbol (the TensorRT optimisation profile; ONNX gets the same symbols as dynamic
axes) and a sample-input function. Everything is derived from the model's `ModelConfig`.

Networks of an objaudio model (`model_contracts`):

    unet               sample (2B, C, H, W), timestep (1,) int64, class_labels (2B, cond) -> eps (2B, C, H, W)
                       (a guidance-distilled UNet: one row per condition, from 1 row: symbol B2's min is 1)
    vae_decoder        latent (B, C, H, W) -> mel (B, 4H, n_mels)   (NaN guard, / scaling_factor, squeeze)
    vocoder            mel (B, T, n_mels) -> wave (B, T * hop)
    image_encoder      pixels (B, 3, S, S) -> tokens (B, P, L)
    text_encoder       input_ids, attention_mask (B, N) int64 -> text_embeds (B, Lq), L2-normalised
    grounding_attention   query (B, Lq), tokens (B, P, L) -> weights (B, heads, P)
    grounding_condition   weights (B, heads, P), tokens (B, P, L) -> cond (B, cond_dim)
    guidance_embedding    cfg (1,) -> embedding (1, cond_dim), added to each condition row of a
                          guidance-distilled UNet (only a model with `guidance_embedding` has it)

Segment Anything (`sam_contracts`): sam_image_encoder (1, 3, 1024, 1024) -> (1, 256, 64, 64) and
sam_mask_decoder, segment-anything's own `SamOnnxModel` (as its scripts/export_onnx_model.py).

The timestep is a (1,) int64 tensor rather than a 0-d scalar: TensorRT profiles need a rank >= 1
shape, and diffusers broadcasts a (1,) timestep over the batch exactly as it does a scalar.
The UNet is traced at a latent length that is NOT a multiple of its downsampling factor, so the
traced graph takes diffusers' general path (upsample to each skip connection's size) and works
for every latent length in the profile, as eager does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from objaudio_rt.modelio.artifacts import CONTRACT_VERSION  # noqa: F401  (re-exported: one version for both sides)
from objaudio_rt.modelio.model import ObjaudioModel
from objaudio_rt.modelio.networks import HifiGan2d, UNetEps, VAEDecodeToMel

OPSET = 17
MAX_BATCH = 4             # selections generated together (the UNet sees twice this with CFG)
MAX_POINTS = 16           # SAM prompt points (a box is two points)


def _randn(shape, gen):
    return torch.randn(shape, generator=gen)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dims: tuple[int | str, ...]          # ints are fixed, strings are profile symbols
    dtype: torch.dtype = torch.float32
    sample: Callable = _randn            # (shape, torch.Generator) -> tensor of `dtype`


@dataclass
class Contract:
    name: str
    module: nn.Module
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    symbols: dict[str, tuple[int, int, int]] = field(default_factory=dict)   # symbol -> (min, opt, max)
    trace_values: dict[str, int] = field(default_factory=dict)               # symbol values to export at

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = {}
        for spec in self.inputs + self.outputs:
            named = {i: d for i, d in enumerate(spec.dims) if isinstance(d, str)}
            if named:
                axes[spec.name] = named
        return axes

    def profile(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """TensorRT optimisation profile: input name -> (min, opt, max) shapes."""
        return profile_shapes(self.to_dict())

    def sample_inputs(self, which: str = "opt", seed: int = 0,
                      values: dict[str, int] | None = None) -> tuple[torch.Tensor, ...]:
        """Random inputs at the profile's min/opt/max shape, with `values` overriding symbols."""
        gen = torch.Generator().manual_seed(seed)
        k = ("min", "opt", "max").index(which)
        symbols = {name: values.get(name, v[k]) if values else v[k] for name, v in self.symbols.items()}
        return tuple(s.sample(_concrete(s.dims, symbols), gen).to(s.dtype) for s in self.inputs)

    def to_dict(self) -> dict:
        """What export_manifest.json records, and what the runtime backends read back."""
        def spec(s):
            return {"name": s.name, "dims": list(s.dims), "dtype": str(s.dtype).removeprefix("torch.")}
        return {"inputs": [spec(s) for s in self.inputs], "outputs": [spec(s) for s in self.outputs],
                "symbols": {k: list(v) for k, v in self.symbols.items()}}


def _concrete(dims, symbols: dict[str, int]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else symbols[d] for d in dims)


def profile_shapes(contract: dict) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """input name -> (min, opt, max) shapes, from `Contract.to_dict()` (as export_manifest.json holds it)."""
    points = [{k: v[i] for k, v in contract["symbols"].items()} for i in range(3)]
    return {s["name"]: tuple(_concrete(s["dims"], p) for p in points) for s in contract["inputs"]}


# ---- wrappers: the exact computation each graph holds ------------------------------------------
# UNetEps, VAEDecodeToMel and HifiGan2d are the runtime's own (objaudio_rt.modelio.networks): the eager backend
# runs the first two, the fast backend on a CPU the third (in channels_last).
class GroundingAttentionGraph(nn.Module):
    def __init__(self, grounding: nn.Module):
        super().__init__()
        self.grounding = grounding

    def forward(self, query, tokens):
        return self.grounding.attention(query, tokens)


class GroundingConditionGraph(nn.Module):
    def __init__(self, grounding: nn.Module):
        super().__init__()
        self.grounding = grounding

    def forward(self, weights, tokens):
        return self.grounding.condition_from_weights(weights, tokens)


class GuidanceEmbeddingGraph(nn.Module):
    def __init__(self, embedding: nn.Module):
        super().__init__()
        self.embedding = embedding

    def forward(self, cfg):
        return self.embedding(cfg)


class SamImageEncoder(nn.Module):
    def __init__(self, sam: nn.Module):
        super().__init__()
        self.encoder = sam.image_encoder

    def forward(self, pixels):
        return self.encoder(pixels)


# ---- contracts ----------------------------------------------------------------------------------
def _ints(high: int):
    return lambda shape, gen: torch.randint(0, high, shape, generator=gen)


def _attention_mask(shape, gen):
    """Ones then zeros per row, as RoBERTa padding gives; at least 2 real tokens."""
    lengths = torch.randint(2, shape[1] + 1, (shape[0], 1), generator=gen)
    return (torch.arange(shape[1])[None] < lengths).long()


def _simplex(shape, gen):
    return torch.rand(shape, generator=gen).softmax(-1)


def _scales(low: float, high: float):
    """Guidance scales drawn uniformly from [low, high] (the ones a distilled UNet was trained on)."""
    return lambda shape, gen: low + (high - low) * torch.rand(shape, generator=gen)


def latent_frames(model: ObjaudioModel, seconds: float) -> int:
    """Latent length H of a clip of `seconds`, by the runtime's rule (ModelConfig.latent_shape)."""
    (_, h, _), _ = model.config.latent_shape(seconds)
    return h


def model_contracts(model: ObjaudioModel) -> dict[str, Contract]:
    cfg = model.config
    c, w = cfg.vae.latent_channels, cfg.mel.n_mels // cfg.vae.downsample_factor
    f_vae = cfg.vae.downsample_factor
    h = (1, latent_frames(model, cfg.clip_seconds), latent_frames(model, cfg.max_seconds))
    p, l, lq, heads = cfg.image.num_patches, cfg.image.embed_dim, cfg.text.projection_dim, cfg.grounding.num_heads
    s, n = cfg.image.image_size, cfg.text.max_length
    batch = (1, 1, MAX_BATCH)
    unet_down = 2 ** (len(cfg.unet.block_out_channels) - 1)
    distilled = model.guidance_embedding is not None      # its UNet runs a single selection as one row
    min_rows = 1 if distilled else 2
    contracts = {
        "unet": Contract(
            "unet", UNetEps(model.unet),
            inputs=(TensorSpec("sample", ("B2", c, "H", w)),
                    TensorSpec("timestep", (1,), torch.int64, _ints(cfg.schedule.num_train_timesteps)),
                    TensorSpec("class_labels", ("B2", cfg.unet.cond_dim))),
            outputs=(TensorSpec("eps", ("B2", c, "H", w)),),
            symbols={"B2": (min_rows, 2, 2 * MAX_BATCH), "H": h},
            trace_values={"H": h[1] + 1 if h[1] % unet_down == 0 else h[1]}),   # see the module docstring
        "vae_decoder": Contract(
            "vae_decoder", VAEDecodeToMel(model.vae),
            inputs=(TensorSpec("latent", ("B", c, "H", w)),),
            outputs=(TensorSpec("mel", ("B", "T", cfg.mel.n_mels)),),
            symbols={"B": batch, "H": h}),
        "vocoder": Contract(
            "vocoder", model.vocoder if cfg.vocoder.vocos is not None       # a Vocos: matrix products as they are
            else HifiGan2d(model.vocoder, channels_last=False),            # 2-D convs: ONNX Runtime blocks them
            inputs=(TensorSpec("mel", ("B", "T", cfg.mel.n_mels)),),
            outputs=(TensorSpec("wave", ("B", "samples")),),
            symbols={"B": batch, "T": tuple(f_vae * x for x in h)}),
        "image_encoder": Contract(
            "image_encoder", model.image_encoder,
            inputs=(TensorSpec("pixels", ("B", 3, s, s)),),
            outputs=(TensorSpec("tokens", ("B", p, l)),),
            symbols={"B": batch}),
        "text_encoder": Contract(
            "text_encoder", model.text_encoder,
            inputs=(TensorSpec("input_ids", ("B", n), torch.int64, _ints(cfg.text.vocab_size)),
                    TensorSpec("attention_mask", ("B", n), torch.int64, _attention_mask)),
            outputs=(TensorSpec("text_embeds", ("B", lq)),),
            symbols={"B": batch}),
        "grounding_attention": Contract(
            "grounding_attention", GroundingAttentionGraph(model.grounding),
            inputs=(TensorSpec("query", ("B", lq)), TensorSpec("tokens", ("B", p, l))),
            outputs=(TensorSpec("weights", ("B", heads, p)),),
            symbols={"B": batch}),
        "grounding_condition": Contract(
            "grounding_condition", GroundingConditionGraph(model.grounding),
            inputs=(TensorSpec("weights", ("B", heads, p), sample=_simplex), TensorSpec("tokens", ("B", p, l))),
            outputs=(TensorSpec("cond", ("B", cfg.unet.cond_dim)),),
            symbols={"B": batch}),
    }
    if distilled:
        d = cfg.distilled
        contracts["guidance_embedding"] = Contract(
            "guidance_embedding", GuidanceEmbeddingGraph(model.guidance_embedding),
            inputs=(TensorSpec("cfg", (1,), sample=_scales(d.cfg_min, d.cfg_max)),),
            outputs=(TensorSpec("embedding", (1, cfg.unet.cond_dim)),))
    return contracts


def sam_contracts(sam: nn.Module) -> dict[str, Contract]:
    from segment_anything.utils.onnx import SamOnnxModel

    size = sam.image_encoder.img_size                                     # 1024
    emb = sam.prompt_encoder.image_embedding_size                         # (64, 64)
    dim = sam.prompt_encoder.embed_dim                                    # 256
    low = tuple(4 * e for e in emb)                                       # (256, 256)
    points = lambda shape, gen: torch.rand(shape, generator=gen) * size   # noqa: E731  (x, y) pixels
    labels = lambda shape, gen: torch.randint(0, 4, shape, generator=gen).float()   # noqa: E731
    return {
        "sam_image_encoder": Contract(
            "sam_image_encoder", SamImageEncoder(sam),
            inputs=(TensorSpec("pixels", (1, 3, size, size)),),
            outputs=(TensorSpec("image_embeddings", (1, dim, *emb)),)),
        "sam_mask_decoder": Contract(
            "sam_mask_decoder", SamOnnxModel(sam, return_single_mask=False),
            inputs=(TensorSpec("image_embeddings", (1, dim, *emb)),
                    TensorSpec("point_coords", (1, "N", 2), sample=points),
                    TensorSpec("point_labels", (1, "N"), sample=labels),
                    TensorSpec("mask_input", (1, 1, *low)),
                    TensorSpec("has_mask_input", (1,), sample=lambda shape, gen: torch.ones(shape)),
                    TensorSpec("orig_im_size", (2,), sample=lambda shape, gen: torch.tensor([1500.0, 2250.0]))),
            outputs=(TensorSpec("masks", (1, 3, "height", "width")), TensorSpec("iou_predictions", (1, 3)),
                     TensorSpec("low_res_masks", (1, 3, *low))),
            symbols={"N": (1, 2, MAX_POINTS)}),
    }


def build_sam(kind: str) -> nn.Module:
    """A random-weight SAM: "tiny" (a 2-block ViT for tests; SAM's real neck, prompt encoder and
    mask decoder) or one of segment-anything's registry types (vit_b, vit_l, vit_h)."""
    from segment_anything import sam_model_registry
    from segment_anything.build_sam import _build_sam

    if kind == "tiny":
        return _build_sam(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2,
                          encoder_global_attn_indexes=[1], checkpoint=None).eval()
    return sam_model_registry[kind](checkpoint=None).eval()
