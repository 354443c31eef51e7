"""The network wrappers: the exact computation the runtime calls, and what `export/` exports.

Each wrapper gives one network the inputs and outputs the pipeline feeds and reads. The eager and
fast backends run them; `export.contracts` exports the same modules, so an exported graph and the
PyTorch path cannot drift apart.
"""
from __future__ import annotations

import torch
from torch import nn

NAN_GUARD = 100.0         # AudioLDM: latents with |z| above this are clamped to +-CLAMP before decoding
CLAMP = 10.0


class UNetEps(nn.Module):
    """The noise prediction with the grounding condition as AudioLDM's class label (FiLM)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        # sample: (N, C, H, W); timestep: () or (1,) int64; class_labels: (N, cond_dim) -> eps (N, C, H, W)
        return self.unet(sample, timestep, encoder_hidden_states=None, class_labels=class_labels).sample


class VAEDecodeToMel(nn.Module):
    """Latent -> log-mel: AudioLDM's NaN guard (on the device, no host sync), / scaling_factor, decode."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        # latent: (B, C, H, W) float32 -> mel (B, 4H, n_mels) in the VAE's dtype
        z = torch.where(latent.abs().amax() > NAN_GUARD, latent.clamp(-CLAMP, CLAMP), latent)
        return self.vae.decode((z / self.vae.config.scaling_factor).to(self.vae.dtype)).sample.squeeze(1)


class HifiGan2d(nn.Module):
    """transformers' SpeechT5HifiGan forward (the reference) as 2-D convolutions over (B, C, 1, L).

    The same arithmetic: every Conv1d becomes a conv2d with a (C_out, C_in, 1, k) kernel, every
    ConvTranspose1d a conv_transpose2d, and the leaky slopes, the averaged residual blocks and the
    final tanh are the reference's (its last leaky_relu uses PyTorch's default slope, 0.01, as there).

    Why: a CPU's oneDNN runs these convolutions several times faster with the samples outermost and
    the channels innermost (`channels_last`) than in Conv1d's (B, C, L) layout, most of all the
    16-channel ones at audio rate (tiny-synth's vocoder, batch 4, 2 threads: a 16->16 k=3 conv over
    40960 samples 7.6 ms as Conv1d, 1.3 ms as channels_last conv2d); and ONNX Runtime blocks 2-D
    convolutions (NCHWc) but not 1-D ones, so the exported graph is the 2-D form too
    (`channels_last=False`: the layout is the runtime's business there).

    The weights are copies of the reference's, taken when this is built: build it after any dtype
    cast of the vocoder. Batched input only: mel (B, T, n_mels) -> waveform (B, T * hop).
    """

    def __init__(self, vocoder: nn.Module, channels_last: bool = True):
        super().__init__()
        cfg = vocoder.config
        if any(len(block.convs1) == 0 for block in vocoder.resblocks):
            raise ValueError("a residual block without convolutions: forward adds into its output in place")
        self.slope = cfg.leaky_relu_slope
        self.kernels = len(cfg.resblock_kernel_sizes)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.normalize = bool(getattr(cfg, "normalize_before", False))
        if self.normalize:
            self.register_buffer("mean", vocoder.mean.detach().clone())
            self.register_buffer("scale", vocoder.scale.detach().clone())
        self.conv_pre = self._conv(vocoder.conv_pre)
        self.upsamplers = nn.ModuleList(self._conv(u, transposed=True) for u in vocoder.upsampler)
        self.resblocks = nn.ModuleList(nn.ModuleList(nn.ModuleList((self._conv(c1), self._conv(c2)))
                                                     for c1, c2 in zip(block.convs1, block.convs2))
                                       for block in vocoder.resblocks)
        self.conv_post = self._conv(vocoder.conv_post)

    def _conv(self, conv: nn.Module, transposed: bool = False) -> nn.Module:
        """The Conv1d / ConvTranspose1d as its 2-D twin with the same weights, bias, stride, padding and dilation."""
        cls = nn.ConvTranspose2d if transposed else nn.Conv2d
        twin = cls(conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]), stride=(1, conv.stride[0]),
                   padding=(0, conv.padding[0]), dilation=(1, conv.dilation[0]), bias=conv.bias is not None,
                   device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            twin.weight.copy_(conv.weight.detach().unsqueeze(2))      # (O, I, k) -> (O, I, 1, k); weight norm folded
            if conv.bias is not None:
                twin.bias.copy_(conv.bias.detach())
        return twin.to(memory_format=self.memory_format)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        # mel: (B, T, n_mels) -> waveform (B, T * hop)
        if self.normalize:
            mel = (mel - self.mean) / self.scale
        x = mel.transpose(2, 1).unsqueeze(2).contiguous(memory_format=self.memory_format)   # (B, n_mels, 1, T)
        x = self.conv_pre(x)
        for i, up in enumerate(self.upsamplers):
            x = up(nn.functional.leaky_relu(x, self.slope))
            x = x.contiguous(memory_format=self.memory_format)       # oneDNN's transposed conv answers in NCHW
            total = None
            for block in self.resblocks[i * self.kernels:(i + 1) * self.kernels]:
                h = x
                for conv1, conv2 in block:
                    # in place only on tensors made here (conv outputs): 7 % less time at audio rate
                    y = nn.functional.leaky_relu_(conv1(nn.functional.leaky_relu(h, self.slope)), self.slope)
                    h = conv2(y).add_(h)
                total = h if total is None else total.add_(h)   # h is a conv output: never x itself
            x = total.div_(self.kernels)
        x = self.conv_post(nn.functional.leaky_relu(x))             # the reference's default slope, 0.01
        return torch.tanh(x).reshape(x.shape[0], -1)                 # (B, 1, 1, L) -> (B, L)
