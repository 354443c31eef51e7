"""Image and text encoders: open_clip's vision tower (patch tokens in L dims) and CLAP's text tower."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import ImageEncoderConfig, TextEncoderConfig
from ..core.errors import ObjaudioError

# A small vocabulary for the random-weight `tiny` preset's tokenizer (trained models ship their own).
_TINY_CORPUS = [
    "a dog barking", "a bird chirping", "a car engine humming", "a bell ringing", "water flowing",
    "fire crackling", "a crowd talking", "a siren wailing", "and then", "while", "the sound of",
    "silence", "a tree", "a house", "a rock", "in the background", "loud", "quiet",
]


class ImageEncoder(nn.Module):
    """open_clip VisionTransformer returning projected patch tokens (B, P, L).

    The image is resized whole (no crop) to image_size x image_size, so every object stays in
    view and masks map onto patches by plain resizing.
    """

    def __init__(self, cfg: ImageEncoderConfig, visual: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.visual = visual if visual is not None else cfg.build()
        self.visual.output_tokens = True

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, H, W, 3) uint8 -> (B, 3, S, S) normalised float, on this encoder's device."""
        return preprocess_pixels(self.cfg, images, self.visual.conv1.weight.device)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels: preprocessed (B, 3, S, S). Returns patch tokens (B, P, L) after ln_post, projected."""
        _, tokens = self.visual(pixels)                   # (B, P, width)
        return tokens @ self.visual.proj                  # (B, P, L)


class TextEncoder(nn.Module):
    """CLAP text tower: token ids -> L2-normalised `text_embeds` (B, L), as AudioLDM uses them."""

    def __init__(self, cfg: TextEncoderConfig, model: nn.Module | None = None, tokenizer=None):
        super().__init__()
        self.cfg = cfg
        self.model = model if model is not None else cfg.build()
        self.tokenizer = tokenizer if tokenizer is not None else build_tokenizer(_TINY_CORPUS, cfg.vocab_size)

    def tokenize(self, texts: list[str], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        return tokenize_texts(self.tokenizer, self.cfg, texts, device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(out.text_embeds, dim=-1)

    def encode(self, texts: list[str], device: torch.device | str = "cpu") -> torch.Tensor:
        return self(**self.tokenize(texts, device))


def preprocess_pixels(cfg: ImageEncoderConfig, images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """images: (B, H, W, 3) uint8 -> (B, 3, S, S) normalised float32 on `device`: resized whole (bicubic,
    antialiased), then CLIP's mean and std. Needs only the config, not the encoder's weights."""
    x = images.to(device).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(cfg.image_size,) * 2, mode="bicubic", antialias=True, align_corners=False)
    mean = torch.tensor(cfg.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, device=x.device).view(1, 3, 1, 1)
    return (x.clamp(0, 1) - mean) / std


def tokenize_texts(tokenizer, cfg: TextEncoderConfig, texts: list[str],
                   device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Token ids and attention mask (B, max_length) int64 for CLAP, padded and truncated to the config's length."""
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            raise ObjaudioError("text selection is empty: give a phrase such as 'a dog barking'")
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=cfg.max_length, return_tensors="pt")
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def build_tokenizer(corpus: list[str], vocab_size: int):
    """Train a byte-level BPE in RoBERTa's format on `corpus`.

    Used for models trained here; upstream CLAP checkpoints bring RoBERTa's own files.
    """
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        bpe.save_model(tmp)
        return load_tokenizer(tmp)


def load_tokenizer(folder: str | os.PathLike):
    """A RoBERTa tokenizer from a transformers folder (tokenizer.json, or vocab.json + merges.txt)."""
    from transformers import RobertaTokenizer

    folder = Path(folder)
    has_json = (folder / "tokenizer.json").is_file()
    has_bpe = (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    if not (has_json or has_bpe):
        raise ObjaudioError(f"tokenizer files missing in {folder}: expected tokenizer.json "
                            "or vocab.json + merges.txt")
    try:
        return RobertaTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise ObjaudioError(f"cannot load the tokenizer in {folder}: {exc}") from None
