"""Our checkpoint format: one folder, safetensors only, a sha256 manifest.

    config.json            {"format": "objaudio-checkpoint", "version": 1, "model": ModelConfig,
                            "calibration": Calibration}
    <component>.safetensors   unet, vae, vocoder, image_encoder, text_encoder, grounding (and
                           guidance_embedding for a distilled UNet, silence_gate for a gated model)
    tokenizer/             the CLAP (RoBERTa) tokenizer, transformers layout
    manifest.json          {"files": {relative path: sha256}}
    fewstep/               optional: the checkpoint's few-step path (issue 20), a checkpoint folder of its
                           own whose config.json says "base": "..": it holds the guidance-distilled UNet,
                           its guidance embedding, its config (the sampler and steps it was made for) and
                           a "fewstep" record (the evaluation it passed, and whether it is the default
                           path); every other component is read from the folder above it, checked
                           against that folder's manifest (`attach_fewstep` writes it)

A `fewstep/` whose record says "default": true is what the folder's name loads (core.config.ModelSource);
`path="full"` (the command lines' --full) loads the folder's own networks, the 20-step two-row path.

Writing goes to a temporary sibling folder that is renamed into place, so a failure never
leaves a half-written checkpoint. Loading checks every hash before reading any weights.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .artifacts import read_json, tensors_fingerprint
from ..core.config import BASE, FEWSTEP, ModelConfig, VocoderConfig, VocosConfig, fewstep_record
from .encoders import load_tokenizer
from .vocos import build_vocoder
from ..core.errors import ObjaudioError, check
from .model import (COMPONENTS, Calibration, GraphModel, ObjaudioModel, build_guidance_embedding, build_silence_gate,
                    components)

FORMAT = "objaudio-checkpoint"
VERSION = 1


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _component_module(model: ObjaudioModel, name: str) -> torch.nn.Module:
    module = getattr(model, name)
    return module.model if name == "text_encoder" else module


def _save_component(module: torch.nn.Module, name: str, path: Path) -> None:
    """One component's file: its state_dict on the CPU, floating tensors as float32."""
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
             for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata={"component": name})


def save_checkpoint(model: ObjaudioModel, calibration: Calibration, folder: str | os.PathLike,
                    force: bool = False) -> Path:
    folder = Path(folder)
    if folder.exists() and not force:
        raise ObjaudioError(f"{folder} already exists: choose another folder or pass --force to replace it")
    parent = folder.parent if str(folder.parent) else Path(".")
    check(parent.is_dir(), f"cannot write {folder}: folder {parent} does not exist")
    check(os.access(parent, os.W_OK), f"cannot write {folder}: folder {parent} is not writable")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=parent))
    try:
        for name in components(model.config):
            _save_component(_component_module(model, name), name, tmp / f"{name}.safetensors")
        model.text_encoder.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        _publish(tmp, {"format": FORMAT, "version": VERSION, "model": model.config.to_dict(),
                       "calibration": calibration.to_dict()}, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _publish(tmp: Path, config: dict, folder: Path) -> None:
    """Finish the checkpoint being written in `tmp`: its config.json, a manifest of every file in it, then
    rename it to `folder` (replacing what is there)."""
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest = {"files": {str(p.relative_to(tmp)): sha256_file(p) for p in files}}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def read_config(folder: str | os.PathLike) -> tuple[ModelConfig, Calibration, dict]:
    """Parse config.json and manifest.json, and verify every file's sha256. Returns (config, calibration, manifest)."""
    folder = Path(folder)
    check(folder.is_dir(), f"checkpoint folder not found: {folder} (give a folder written by save_pretrained, "
                           "the embedded model's name tiny-synth, or random:PRESET for random weights)")
    owner, fix = f"checkpoint {folder}", "it is incomplete or damaged; copy it again"
    raw, manifest = (read_json(folder / name, owner, fix) for name in ("config.json", "manifest.json"))
    check(raw.get("format") == FORMAT, f"{folder} is not an objaudio checkpoint (config.json format is "
                                       f"{raw.get('format')!r}); use `objaudio assemble` for upstream weights")
    check(raw.get("version") == VERSION, f"checkpoint version {raw.get('version')} is not supported (need {VERSION})")
    check(isinstance(manifest.get("files"), dict),
          f"manifest.json of {folder} has no \"files\" table: the checkpoint is damaged; copy it again")
    for key in ("model", "calibration"):
        check(isinstance(raw.get(key), dict), f"config.json of {folder} has no \"{key}\" section: the checkpoint "
                                              "is damaged or was edited by hand; copy it again")
    files = _verified_paths(folder, manifest["files"])
    base = raw.get("base")
    if base is not None:                # a carried few-step path: the rest of the model is the folder above
        check(base == BASE and folder.name == FEWSTEP,
              f"config.json of {folder} names the base {base!r}: only a checkpoint's {FEWSTEP}/ folder may have "
              f"one, and only {BASE!r}; copy the checkpoint again")
        parent_raw = read_json(folder.parent / "config.json", f"checkpoint {folder.parent}", fix)
        check(parent_raw.get("base") is None, f"{folder.parent} is itself a carried path: a base cannot have one")
        _, _, parent = read_config(folder.parent)
        files = {**parent["paths"], **files}
    for name in COMPONENTS:
        check(f"{name}.safetensors" in files, f"manifest of {folder} does not list {name}.safetensors")
    manifest = {**manifest, "paths": files}
    try:
        config = ModelConfig.from_dict(raw["model"])
        calibration = Calibration(**raw["calibration"])
    except (TypeError, KeyError) as exc:
        raise ObjaudioError(f"config.json of {folder} does not describe a model ({exc}): the checkpoint is "
                            "damaged or was edited by hand; copy it again") from None
    for name in components(config)[len(COMPONENTS):]:
        check(f"{name}.safetensors" in files, f"manifest of {folder} does not list {name}.safetensors, which "
                                              "its config.json names: the checkpoint is incomplete; copy it again")
    return config, calibration, manifest


def _verified_paths(folder: Path, files: dict) -> dict[str, Path]:
    """Every file the manifest lists, as a path, after checking that it is there with its sha256."""
    paths = {}
    for rel, digest in files.items():
        path = folder / rel
        check(path.is_file(), f"checkpoint {folder} is missing {rel}: it is incomplete; copy it again")
        actual = sha256_file(path)
        check(actual == digest, f"checksum mismatch for {path}: expected {digest[:12]}..., got {actual[:12]}...; "
                                "the file is corrupt or was changed; copy the checkpoint again")
        paths[rel] = path
    return paths


def load_checkpoint(folder: str | os.PathLike) -> tuple[ObjaudioModel, Calibration]:
    folder = Path(folder)
    config, calibration, manifest = read_config(folder)
    from .encoders import TextEncoder

    text = TextEncoder(config.text, tokenizer=load_tokenizer(folder / "tokenizer"))
    model = ObjaudioModel(config, text_encoder=text)
    for name in components(config):
        path = manifest["paths"][f"{name}.safetensors"]
        state = _read_weights(path)
        try:
            _component_module(model, name).load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ObjaudioError(f"{path} does not match config.json: {str(exc).splitlines()[0]}") from None
    return model.eval(), calibration


def checkpoint_fingerprint(folder: str | os.PathLike) -> str:
    """artifacts.model_fingerprint of the model in `folder`, from its files alone (no network is built)."""
    config, _, manifest = read_config(folder)
    return _files_fingerprint(config, _component_states(manifest, config))


def load_graph_model(folder: str | os.PathLike) -> tuple[GraphModel, Calibration]:
    """What a graph backend needs of the checkpoint in `folder` (model.GraphModel), built in a fraction
    of a second from one read of its files: its networks run as exported graphs."""
    from ..core.grounding import GroundingAttention

    folder = Path(folder)
    config, calibration, manifest = read_config(folder)
    states = _component_states(manifest, config)
    grounding = GroundingAttention(config.grounding)
    try:
        grounding.load_state_dict(states["grounding"], strict=True)
    except RuntimeError as exc:
        raise ObjaudioError(f"{folder / 'grounding.safetensors'} does not match config.json: "
                            f"{str(exc).splitlines()[0]}") from None
    embedding, gate = build_guidance_embedding(config), build_silence_gate(config)
    for name, module in (("guidance_embedding", embedding), ("silence_gate", gate)):
        if module is not None:
            try:
                module.load_state_dict(states[name], strict=True)
            except RuntimeError as exc:
                raise ObjaudioError(f"{folder / (name + '.safetensors')} does not match config.json: "
                                    f"{str(exc).splitlines()[0]}") from None
            module.eval()
    return GraphModel(config, grounding.eval(), _files_fingerprint(config, states), str(folder), embedding,
                      gate), calibration


def _component_states(manifest: dict, config: ModelConfig) -> dict[str, dict[str, torch.Tensor]]:
    """Each component's tensors as its file holds them (component -> key -> tensor); `manifest` from read_config."""
    return {name: _read_weights(manifest["paths"][f"{name}.safetensors"]) for name in components(config)}


def _files_fingerprint(config: ModelConfig, states: dict[str, dict[str, torch.Tensor]]) -> str:
    """model_fingerprint from the files' tensors: the same config dict and, per component, every tensor
    under its state_dict key (TextEncoder wraps the CLAP module: `_component_module`), sorted, as float32."""
    keyed = {name: {("model." if name == "text_encoder" else "") + k: v for k, v in state.items()}
             for name, state in states.items()}
    return tensors_fingerprint(config.to_dict(), keyed)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ObjaudioError(f"cannot read {path}: {str(exc).splitlines()[0]}; the file is truncated or "
                            "corrupt") from None


def describe(folder: str | os.PathLike) -> dict:
    """What `objaudio info` prints: preset, sizes, hashes, calibration."""
    from safetensors import safe_open

    config, calibration, manifest = read_config(folder)
    sizes = {}
    for name in components(config):
        path = manifest["paths"][f"{name}.safetensors"]
        try:
            with safe_open(str(path), framework="pt") as f:
                sizes[name] = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
        except (SafetensorError, OSError) as exc:
            raise ObjaudioError(f"cannot read {path}: {str(exc).splitlines()[0]}; the file is truncated or "
                                "corrupt (its manifest entry was written for the damaged file)") from None
    return {"checkpoint": str(folder), "preset": config.name, "parameters": sizes,
            "total_parameters": sum(sizes.values()), "calibration": calibration.to_dict(),
            "clip_seconds": config.clip_seconds, "max_seconds": config.max_seconds,
            "defaults": {"steps": config.default_steps, "sampler": config.default_sampler,
                         "cfg": config.default_cfg},
            "distilled": None if config.distilled is None else dataclasses.asdict(config.distilled),
            "silence_gate": None if config.silence_gate is None else dataclasses.asdict(config.silence_gate),
            "files": manifest["files"], "fewstep": fewstep_record(folder)}


# ---- a carried few-step path (issue 20) -----------------------------------------------------------
def attach_fewstep(teacher: str | os.PathLike, student: str | os.PathLike, record: dict,
                   default: bool = False, steps: int | None = None) -> Path:
    """Write `student` (a checkpoint guidance-distilled from `teacher`, training/distill.py) into
    `teacher`/fewstep/: the student's files that differ from the teacher's, its tokenizer and its config
    with "base": ".." and the "fewstep" record (`record`: the evaluation it passed; `default`: whether
    the folder's name loads it). `steps`, where given, replaces the steps the student was made for as the
    path's default (a student run at more steps than it was made for). Replaces a few-step path already
    there; the teacher's own files, manifest and fingerprint are left as they were. Written in a temporary
    sibling folder renamed into place."""
    teacher, student = Path(teacher), Path(student)
    t_config, _, t_manifest = read_config(teacher)
    s_config, s_calibration, s_manifest = read_config(student)
    if steps is not None:
        check(isinstance(steps, int) and steps >= 1, f"the few-step path's steps must be a whole number >= 1, "
                                                     f"got {steps!r}")
        s_config = dataclasses.replace(s_config, default_steps=steps)
    check(t_config.distilled is None, f"{teacher} is guidance-distilled itself: attach a student to its teacher")
    check(s_config.distilled is not None, f"{student} is not a guidance-distilled checkpoint (training/distill.py)")
    fingerprint = _files_fingerprint(t_config, _component_states(t_manifest, t_config))   # files read_config checked
    check(s_config.distilled.teacher == fingerprint,
          f"{student} was distilled from another teacher ({s_config.distilled.teacher[:12]}...) than {teacher} "
          f"({fingerprint[:12]}...): distil it from this one")
    own = sorted(rel for rel in s_manifest["files"] if not rel.startswith("tokenizer/") and rel.endswith(".safetensors")
                 and t_manifest["files"].get(rel) != s_manifest["files"][rel])
    check("unet.safetensors" in own, f"{student}'s UNet is its teacher's: there is nothing to attach")
    tmp = Path(tempfile.mkdtemp(prefix=f".{FEWSTEP}.", suffix=".part", dir=teacher))
    try:
        os.chmod(tmp, 0o755)                                  # mkdtemp's 0700: readable like the folder above
        for rel in own:
            shutil.copyfile(s_manifest["paths"][rel], tmp / rel)
        shutil.copytree(student / "tokenizer", tmp / "tokenizer")
        _publish(tmp, {"format": FORMAT, "version": VERSION, "base": BASE,
                       FEWSTEP: {**record, "default": bool(default)},
                       "model": s_config.to_dict(), "calibration": s_calibration.to_dict()}, teacher / FEWSTEP)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out = teacher / FEWSTEP
    read_config(out)                                          # the result loads as a checkpoint of its own
    return out


# ---- another vocoder under the same networks ------------------------------------------------------
def _vocoder_config_of(state: dict[str, torch.Tensor], config: ModelConfig) -> VocoderConfig:
    """The VocoderConfig of the vocoder whose weights are `state`, under `config`'s mel: a Vocos
    (modelio/vocos.py: embed, blocks.N, head) of the sizes its weights have, or config's HiFi-GAN at
    the width its conv_pre has (no narrower than config's: training/widen.py only widens)."""
    if "embed.weight" in state and "head.weight" in state:
        blocks = {int(k.split(".")[1]) for k in state if k.startswith("blocks.") and k.split(".")[1].isdigit()}
        check(blocks == set(range(len(blocks))) and "blocks.0.pwconv1.weight" in state,
              "the new vocoder's weights look like a Vocos (embed, head) but its blocks.N are missing or gapped")
        vocos = VocosConfig(dim=int(state["embed.weight"].shape[0]),
                            intermediate_dim=int(state["blocks.0.pwconv1.weight"].shape[0]),
                            num_layers=len(blocks), n_fft=int(state["head.weight"].shape[0]) - 2,
                            hop_length=config.mel.hop_length)
        return dataclasses.replace(config.vocoder, vocos=vocos)
    pre = state.get("conv_pre.weight")
    check(pre is not None and pre.dim() == 3, "the new vocoder's weights have neither conv_pre.weight (a "
                                              "SpeechT5HifiGan) nor embed and head (a Vocos)")
    width = int(pre.shape[0])
    check(config.vocoder.vocos is not None or width >= config.vocoder.upsample_initial_channel,
          f"the new vocoder has {width} channels where the checkpoint's has "
          f"{config.vocoder.upsample_initial_channel}: a vocoder may be widened, not narrowed")
    return dataclasses.replace(config.vocoder, upsample_initial_channel=width, vocos=None)


def replace_vocoder(checkpoint: str | os.PathLike, state: dict[str, torch.Tensor], out: str | os.PathLike,
                    note: dict, force: bool = False) -> Path:
    """Write `out`: `checkpoint` with its vocoder's weights replaced by `state`, every other file as it was.
    `state` has `checkpoint`'s vocoder sizes, or the same with a wider upsample_initial_channel (a vocoder
    widened by training/widen.py): then config.json records the new width, the carried path's too. A
    carried few-step path comes along: the vocoder takes no part in the diffusion or its
    distillation (both work on the VAE's latents), so the student of `checkpoint` is as much the student of
    `out`. Its record of its teacher (config "distilled.teacher") is rewritten to `out`'s fingerprint,
    where it named `checkpoint`'s, and its "fewstep" record gains "vocoder": `note` and the sha256 of the
    vocoder file before and after. Written in a temporary sibling folder renamed into place."""
    checkpoint, out = Path(checkpoint), Path(out)
    config, _, manifest = read_config(checkpoint)
    check(read_json(checkpoint / "config.json", f"checkpoint {checkpoint}", "copy it again").get("base") is None,
          f"{checkpoint} is a carried few-step path: give the checkpoint folder above it")
    check(not out.exists() or force, f"{out} already exists: choose another folder or pass --force to replace it")
    check(not out.exists() or out.resolve() != checkpoint.resolve(),
          f"{out} is the checkpoint itself: write another folder, check it, then move it into place")
    old_fingerprint = _files_fingerprint(config, _component_states(manifest, config))
    config = dataclasses.replace(config, vocoder=_vocoder_config_of(state, config))
    vocoder = build_vocoder(config.vocoder)
    try:
        vocoder.load_state_dict(state)
    except RuntimeError as exc:
        raise ObjaudioError(f"the new vocoder's weights do not fit {checkpoint}'s vocoder (another preset's "
                            f"sizes?): {str(exc).splitlines()[0]}") from None
    vocoder_dict = json.loads(json.dumps(config.to_dict()["vocoder"]))               # as config.json has it
    parent = out.parent if str(out.parent) else Path(".")
    check(parent.is_dir(), f"cannot write {out}: folder {parent} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=parent))
    try:
        os.chmod(tmp, 0o755)
        shutil.copytree(checkpoint, tmp, dirs_exist_ok=True)
        target = tmp / "vocoder.safetensors"
        _save_component(vocoder, "vocoder", target)
        files = dict(manifest["files"])
        before, after = files["vocoder.safetensors"], sha256_file(target)
        files["vocoder.safetensors"] = after
        raw = json.loads((tmp / "config.json").read_text())
        if raw["model"]["vocoder"] != vocoder_dict:                  # widened or another kind: recorded
            raw["model"]["vocoder"] = vocoder_dict
            (tmp / "config.json").write_text(json.dumps(raw, indent=2))
            files["config.json"] = sha256_file(tmp / "config.json")
        (tmp / "manifest.json").write_text(json.dumps({"files": files}, indent=2))
        carried = tmp / FEWSTEP
        if (carried / "config.json").is_file():
            _, _, new_manifest = read_config(tmp)
            new_fingerprint = _files_fingerprint(config, _component_states(new_manifest, config))
            raw = json.loads((carried / "config.json").read_text())
            distilled = raw.get("model", {}).get("distilled") or {}
            if distilled.get("teacher") == old_fingerprint:
                distilled["teacher"] = new_fingerprint
            raw[FEWSTEP] = {**raw.get(FEWSTEP, {}), "vocoder": {**note, "replaced": before, "by": after}}
            raw["model"]["vocoder"] = vocoder_dict
            (carried / "config.json").write_text(json.dumps(raw, indent=2))
            carried_manifest = json.loads((carried / "manifest.json").read_text())
            carried_manifest["files"]["config.json"] = sha256_file(carried / "config.json")
            (carried / "manifest.json").write_text(json.dumps(carried_manifest, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    read_config(out)                                          # the result loads, with its few-step path
    if (out / FEWSTEP).is_dir():
        read_config(out / FEWSTEP)
    return out
