"""The configs and tokenizer that ship with latentgraph, so loading a checkpoint never needs a hub.

``data/configs/<name>/`` holds weightless diffusers-layout folders (``model_index.json``, one
``config.json`` per component, ``scheduler/scheduler_config.json``) for the architectures we
recognise. ``data/clip_tokenizer/`` holds the one CLIP BPE vocabulary every SD text encoder uses;
tokenizer folders inside the configs only say which pad token that encoder expects (SD1's
OpenAI CLIP pads with ``<|endoftext|>``, OpenCLIP in SD2/SDXL with ``!``).

The vocabulary is derived from the MIT-licensed ``bpe_simple_vocab_16e6.txt.gz`` of
open-clip-torch; ``python -m latentgraph.nodes.model_configs tokenizer --bpe FILE`` rebuilds it.
"""

from __future__ import annotations

import argparse
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
CONFIGS_DIR = DATA_DIR / "configs"
TOKENIZER_DIR = DATA_DIR / "clip_tokenizer"

#: Shipped config folders. ``sd2`` is the 512px epsilon model, ``sd2_v`` the 768px v-prediction one.
CONFIG_NAMES = ("sd1", "sd2", "sd2_v", "sdxl")
#: Model families: what must match between MODEL, CLIP and VAE.
ARCHES = ("sd1", "sd2", "sdxl")

#: Metadata key in a safetensors header holding :meth:`ArchConfig.to_json`.
METADATA_KEY = "latentgraph.config"

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
#: The CLIP vocabulary: 256 byte symbols, the same with ``</w>``, 48,894 merges, BOS, EOS.
CLIP_VOCAB_SIZE = 49408
CLIP_NUM_MERGES = 49152 - 256 - 2


@dataclass(frozen=True)
class TextEncoderConfig:
    """One text encoder of a checkpoint and how its weights are laid out there."""

    #: transformers class: "CLIPTextModel" or "CLIPTextModelWithProjection"
    class_name: str
    config: dict[str, Any]
    #: Key layout inside an original checkpoint: "clip" (HF names) or "open_clip".
    layout: str = "clip"
    #: "<|endoftext|>" (OpenAI CLIP) or "!" (OpenCLIP)
    pad_token: str = EOS_TOKEN

    def to_dict(self) -> dict[str, Any]:
        return {"class_name": self.class_name, "config": self.config, "layout": self.layout, "pad_token": self.pad_token}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextEncoderConfig:
        return cls(
            class_name=data["class_name"],
            config=dict(data["config"]),
            layout=data.get("layout", "clip"),
            pad_token=data.get("pad_token", EOS_TOKEN),
        )


@dataclass(frozen=True)
class ArchConfig:
    """Everything needed to build a model family's components without their weights."""

    #: "sd1", "sd2", "sdxl"
    arch: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    scheduler: dict[str, Any]
    text_encoders: tuple[TextEncoderConfig, ...] = ()
    #: Which shipped folder (or "metadata") this came from.
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def prediction_type(self) -> str:
        return str(self.scheduler.get("prediction_type", "epsilon"))

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": 1,
                "arch": self.arch,
                "unet": self.unet,
                "vae": self.vae,
                "scheduler": self.scheduler,
                "text_encoders": [t.to_dict() for t in self.text_encoders],
                "extra": self.extra,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> ArchConfig:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("arch") not in ARCHES:
            raise ValueError(f"arch must be one of {ARCHES}")
        return cls(
            arch=data["arch"],
            unet=dict(data["unet"]),
            vae=dict(data["vae"]),
            scheduler=dict(data.get("scheduler") or {}),
            text_encoders=tuple(TextEncoderConfig.from_dict(t) for t in data.get("text_encoders", [])),
            source=source,
            extra=dict(data.get("extra") or {}),
        )


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _public(config: dict[str, Any]) -> dict[str, Any]:
    """A config without diffusers/transformers bookkeeping keys (``_class_name``…)."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


def read_config_folder(folder: Path, source: str = "") -> ArchConfig:
    """Read a diffusers-layout folder (shipped or user's) into an :class:`ArchConfig`."""
    folder = Path(folder)
    index = _read_json(folder / "model_index.json")
    unet = _public(_read_json(folder / "unet" / "config.json"))
    vae = _public(_read_json(folder / "vae" / "config.json"))
    sched_path = folder / "scheduler" / "scheduler_config.json"
    scheduler = _read_json(sched_path) if sched_path.is_file() else {}
    encoders = []
    for enc_name, tok_name in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")):
        entry = index.get(enc_name)
        if not entry or entry[1] is None:
            continue
        cfg = _read_json(folder / enc_name / "config.json")
        tok_cfg_path = folder / tok_name / "tokenizer_config.json"
        pad = EOS_TOKEN
        if tok_cfg_path.is_file():
            pad = _token_content(_read_json(tok_cfg_path).get("pad_token", EOS_TOKEN))
        layout = "open_clip" if pad == "!" else "clip"
        encoders.append(TextEncoderConfig(class_name=entry[1], config=_public(cfg), layout=layout, pad_token=pad))
    return ArchConfig(
        arch=arch_of_unet_config(unet),
        unet=unet,
        vae=vae,
        scheduler=_public(scheduler),
        text_encoders=tuple(encoders),
        source=source or str(folder),
        extra={"scheduler_class": scheduler.get("_class_name", "")},
    )


def load_shipped_config(name: str) -> ArchConfig:
    """One of :data:`CONFIG_NAMES`, read from ``data/configs``."""
    if name not in CONFIG_NAMES:
        raise KeyError(f"no shipped config {name!r}; have {', '.join(CONFIG_NAMES)}")
    return read_config_folder(CONFIGS_DIR / name, source=name)


def write_config_folder(cfg: ArchConfig, folder: Path) -> Path:
    """Write ``cfg`` as a weightless diffusers-layout folder with the shipped vocabulary: what
    diffusers' ``from_single_file(path, config=folder, local_files_only=True)`` needs to load a
    single file offline (the reference our loader is compared with)."""
    folder = Path(folder)
    shipped = "sd2" if cfg.arch == "sd2" else cfg.arch
    index = _read_json(CONFIGS_DIR / shipped / "model_index.json")
    parts: dict[str, dict[str, Any]] = {
        "unet/config.json": {"_class_name": "UNet2DConditionModel", **cfg.unet},
        "vae/config.json": {"_class_name": "AutoencoderKL", **cfg.vae},
        "scheduler/scheduler_config.json": {"_class_name": index["scheduler"][1], **cfg.scheduler},
    }
    for i, enc in enumerate(cfg.text_encoders):
        suffix = "" if i == 0 else f"_{i + 1}"
        parts[f"text_encoder{suffix}/config.json"] = {
            **enc.config, "architectures": [enc.class_name], "model_type": "clip_text_model"
        }
        parts[f"tokenizer{suffix}/tokenizer_config.json"] = tokenizer_config(enc.pad_token)
        for name in ("vocab.json", "merges.txt"):
            (folder / f"tokenizer{suffix}").mkdir(parents=True, exist_ok=True)
            (folder / f"tokenizer{suffix}" / name).write_bytes((TOKENIZER_DIR / name).read_bytes())
    parts["model_index.json"] = index
    for name, data in parts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(data, indent=2) + "\n")
    return folder


def arch_of_unet_config(unet: dict[str, Any]) -> str:
    """Family of a diffusers UNet config: SDXL has text-time embeddings, SD2 1024-wide context."""
    if unet.get("addition_embed_type") == "text_time":
        return "sdxl"
    dim = unet.get("cross_attention_dim")
    dim = dim[0] if isinstance(dim, (list, tuple)) else dim
    if dim == 1024 or unet.get("use_linear_projection"):
        return "sd2"
    return "sd1"


def _token_content(token: Any) -> str:
    return token["content"] if isinstance(token, dict) else str(token)


# -- CLIP tokenizer ------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """The byte → printable-character table of byte-level BPE (GPT-2 / CLIP).

    Printable Latin-1 bytes map to themselves; the other 68 bytes to code points from 256 up,
    in byte order, so every byte has a visible, whitespace-free symbol.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {}
    extra = 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    # Order matters for the vocabulary: printable bytes first, then the remapped ones.
    return {b: table[b] for b in [*printable, *(b for b in range(256) if b not in printable)]}


def derive_clip_vocab(bpe_gz: Path) -> tuple[dict[str, int], list[str]]:
    """Vocabulary and merge list of the CLIP tokenizer from ``bpe_simple_vocab_16e6.txt.gz``."""
    lines = gzip.decompress(Path(bpe_gz).read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : CLIP_NUM_MERGES + 1]
    if len(merges) != CLIP_NUM_MERGES or any(len(m.split(" ")) != 2 for m in merges):
        raise ValueError(f"{bpe_gz} does not look like the CLIP BPE merge file")
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split(" ")) for m in merges] + [BOS_TOKEN, EOS_TOKEN]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"derived {len(vocab)} tokens, expected {CLIP_VOCAB_SIZE}")
    return vocab, merges


def tokenizer_config(pad_token: str = EOS_TOKEN) -> dict[str, Any]:
    return {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": pad_token,
    }


def write_clip_tokenizer(bpe_gz: Path, out_dir: Path = TOKENIZER_DIR) -> Path:
    """Write vocab.json, merges.txt and the token configs the transformers CLIPTokenizer reads."""
    vocab, merges = derive_clip_vocab(bpe_gz)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(), indent=2) + "\n")
    special = {k: tokenizer_config()[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return out_dir


def load_clip_tokenizer(pad_token: str = EOS_TOKEN, folder: Path | None = None):
    """The shipped CLIP tokenizer (offline), with the pad token its text encoder was trained with."""
    from transformers import CLIPTokenizer

    folder = Path(folder) if folder is not None else TOKENIZER_DIR
    return CLIPTokenizer.from_pretrained(str(folder), pad_token=pad_token, local_files_only=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentgraph.nodes.model_configs")
    sub = parser.add_subparsers(dest="command", required=True)
    tok = sub.add_parser("tokenizer", help="derive data/clip_tokenizer from open_clip's BPE file")
    tok.add_argument("--bpe", required=True, type=Path, help="open_clip/bpe_simple_vocab_16e6.txt.gz")
    tok.add_argument("--out", type=Path, default=TOKENIZER_DIR)
    args = parser.parse_args(argv)
    out = write_clip_tokenizer(args.bpe, args.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
