"""Where files live and which device runs the models; passed explicitly, never global."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GiB = 1024**3
#: Model kinds that have a folder under each model root.
MODEL_FOLDERS = ("checkpoints", "vae", "loras", "embeddings")
CONFIG_FILE = "latentgraph.toml"


@dataclass(frozen=True)
class Settings:
    """Paths, device and memory policy of one engine.

    ``base_dir`` holds ``models/<kind>/``, ``input/``, ``output/`` and ``temp/`` unless overridden.
    Extra model roots come from ``latentgraph.toml`` (``model_roots = [...]``), the
    ``LATENTGRAPH_MODEL_PATHS`` environment variable (``os.pathsep``-separated) and plugins.
    """

    base_dir: Path
    output_dir: Path
    input_dir: Path
    temp_dir: Path
    model_roots: tuple[Path, ...]
    #: "auto", "cpu", "cuda", "cuda:1", "mps"
    device: str = "auto"
    #: "auto", "fp32", "fp16", "bf16"
    dtype: str = "auto"
    #: Folders LoadImage also looks in, after ``input_dir``: ``latentgraph run`` adds the
    #: workflow file's own ``input/`` so a workflow shipped with its pictures runs as it is.
    extra_input_dirs: tuple[Path, ...] = ()
    #: Cache byte budget per device type ("cpu", "cuda", "mps").
    cache_budget: dict[str, int] = field(default_factory=lambda: {"cpu": 8 * GiB, "cuda": 6 * GiB, "mps": 4 * GiB})
    #: Bytes of model weights allowed on the compute device at once (None: no limit, models stay
    #: where they were loaded; "auto": the GPU's memory less a reserve for activations, none on
    #: the CPU). Over it, least recently used models go back to ``offload_device``.
    device_budget: int | str | None = None
    offload_device: str = "cpu"

    @classmethod
    def from_env(
        cls,
        base_dir: str | Path | None = None,
        *,
        output_dir: str | Path | None = None,
        environ: dict[str, str] | None = None,
        **overrides,
    ) -> Settings:
        env = os.environ if environ is None else environ
        base = Path(base_dir or env.get("LATENTGRAPH_HOME") or Path.cwd()).resolve()
        config: dict = {}
        cfg_path = base / CONFIG_FILE
        if cfg_path.is_file():
            config = tomllib.loads(cfg_path.read_text())
        roots = [base / "models"]
        roots += [(base / p).resolve() for p in config.get("model_roots", [])]
        roots += [Path(p).resolve() for p in env.get("LATENTGRAPH_MODEL_PATHS", "").split(os.pathsep) if p]
        budget = {"cpu": 8 * GiB, "cuda": 6 * GiB, "mps": 4 * GiB}
        budget.update({k: int(v) for k, v in config.get("cache_budget", {}).items()})
        if env.get("LATENTGRAPH_CACHE_BUDGET"):
            budget.update(parse_budget(env["LATENTGRAPH_CACHE_BUDGET"]))
        values = dict(
            base_dir=base,
            output_dir=Path(output_dir or config.get("output_dir") or base / "output").resolve(),
            input_dir=(base / config.get("input_dir", "input")).resolve(),
            temp_dir=(base / config.get("temp_dir", "temp")).resolve(),
            model_roots=tuple(dict.fromkeys(roots)),
            device=env.get("LATENTGRAPH_DEVICE", config.get("device", "auto")),
            dtype=env.get("LATENTGRAPH_DTYPE", config.get("dtype", "auto")),
            cache_budget=budget,
            device_budget=_device_budget(env.get("LATENTGRAPH_DEVICE_BUDGET", config.get("device_budget"))),
        )
        values.update(overrides)
        return cls(**values)

    def input_dirs(self) -> list[Path]:
        return list(dict.fromkeys((self.input_dir, *self.extra_input_dirs)))

    def with_model_roots(self, *roots: Path) -> Settings:
        return replace(self, model_roots=tuple(dict.fromkeys((*self.model_roots, *roots))))

    def model_dirs(self, kind: str) -> list[Path]:
        return [root / kind for root in self.model_roots]

    def list_models(self, kind: str, suffixes: tuple[str, ...] = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")) -> list[str]:
        """Relative names of model files (and diffusers folders) of one kind, first root wins."""
        names: dict[str, None] = {}
        for folder in self.model_dirs(kind):
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                rel = path.relative_to(folder).as_posix()
                if path.is_file() and path.suffix.lower() in suffixes:
                    names.setdefault(rel)
                elif path.is_dir() and (path / "model_index.json").is_file():
                    names.setdefault(rel)
        return list(names)

    def find_model(self, kind: str, name: str) -> Path | None:
        """Resolve a model name inside the model folders; never outside them."""
        for folder in self.model_dirs(kind):
            candidate = (folder / name).resolve()
            if candidate.is_relative_to(folder.resolve()) and candidate.exists():
                return candidate
        return None


def parse_budget(text: str) -> dict[str, int]:
    """``"cpu=8G,cuda=6G"`` → bytes per device type."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        dev, _, amount = part.partition("=")
        out[dev.strip()] = parse_bytes(amount)
    return out


def parse_bytes(text: str) -> int:
    """``"6G"``, ``"512M"``, ``"1.5GB"``, ``"1000"`` → bytes."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": GiB, "T": 1024**4}
    amount = str(text).strip().upper().rstrip("B")
    unit = amount[-1] if amount and amount[-1] in units else ""
    number = amount[: len(amount) - len(unit)] if unit else amount
    return int(float(number) * units[unit])


def _device_budget(value: str | int | None) -> int | str | None:
    if value is None or value == "" or str(value).lower() == "none":
        return None
    if str(value).lower() == "auto":
        return "auto"
    return value if isinstance(value, int) else parse_bytes(value)
