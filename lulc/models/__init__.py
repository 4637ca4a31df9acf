"""Models: the builders of the model families (:mod:`lulc.families` holds what each family *is*: its role, bands,
statistics, releases, search space and colour; this package builds its networks), chosen by ``models.<name>.type``.

Every model is a :class:`~lulc.models.core.LULCModel`: raw int16 chips ``(B, T, 6, H, W)`` (time-major,
:mod:`lulc.hls`) go in, logits ``(B, classes, H, W)`` come out. The model normalises its own input on the
device with the statistics it was configured with (its family's pretraining statistics by default, or the training
chips' own with ``normalization: dataset``; a trained checkpoint keeps them) and refuses input that is not what
it expects (:mod:`lulc.models.normalization`). A model whose family takes time and location (Prithvi-EO-2.0
``_tl``) also takes each sample's frame dates and centre (``coords``, :mod:`lulc.coords`) and refuses to run without.

Builders, one module each, which registers its builder with :func:`~lulc.models.registry.register_model`:

* ``prithvi`` (:mod:`lulc.models.prithvi`): a Prithvi encoder from TerraTorch's ``BACKBONE_REGISTRY`` with ``T``
  frames and an FCN or UPerNet decoder; weights from a local file in the official Prithvi key layout, every key
  checked (:func:`load_prithvi_encoder`).
* ``terramind``, ``clay``, ``dofa`` (:mod:`lulc.models.terramind`, :mod:`lulc.models.clay`,
  :mod:`lulc.models.dofa`): single-image encoders from TerraTorch run per frame, their token grids merged
  (:mod:`lulc.models.framewise`), with the FCN decoder; released weights loaded strictly in their published layout.
* ``unet`` (:mod:`lulc.models.unet`): segmentation-models-pytorch ``Unet`` from scratch on all ``T x 6``
  channels, with any smp encoder or a timm one (``tu-<name>``).
* ``vit`` (:mod:`lulc.models.vit`): a timm ViT on all ``T x 6`` channels with an FCN decoder built like
  TerraTorch's; natural-image weights only from a local file.

Entries of ViT-like families also take ``decoder_dropout`` / ``decoder_norm`` (the FCN decoder,
:mod:`lulc.models.decoders`), ``aux_head`` (an auxiliary FCN head on the same features, whose logits only
``LULCModel.forward_with_aux`` returns, for the training loss), and the training options ``freeze_encoder`` /
``layer_decay``, which act on :func:`vit_encoder` (:func:`freeze_encoder`, :func:`encoder_layer_id`).

The shared modules: :mod:`~lulc.models.core` (the wrapper), :mod:`~lulc.models.normalization`,
:mod:`~lulc.models.precision` (fp32 matmuls, the TerraTorch import, ``auto`` precision),
:mod:`~lulc.models.registry` (:func:`build_model`), :mod:`~lulc.models.weights` (weights files) and
:mod:`~lulc.models.checkpoint` (trained checkpoints). They never import a family module; this package imports
every family module, so importing :mod:`lulc.models` registers them all. TerraTorch, timm and
segmentation-models-pytorch are imported only by the builder that needs them.

This module re-exports the names the rest of the workflow imports (``from lulc.models import ...``).
"""

from __future__ import annotations

# The family modules register their builders when imported: every family is known once lulc.models is imported.
from lulc.models import clay, dofa, prithvi, terramind, unet, vit  # noqa: F401
from lulc.models.checkpoint import checkpoint_legend, load_trained_model, save_trained_model
from lulc.models.core import BuiltModel, batch_coords_of, encoder_layer_id, freeze_encoder, vit_encoder
from lulc.models.normalization import (
    HLS_VALID_RANGE,
    MAX_ABS_NORMALISED,
    HLSNormalize,
    Normalization,
    UnnormalisedInputError,
    check_normalised,
    normalised_bound,
    resolve_normalization,
)
from lulc.models.precision import (
    PrecisionChoice,
    channels_last_convolutions,
    choose_precision,
    enforce_fp32_matmul_precision,
    hardware_class,
    import_terratorch,
    resolve_precision,
)
from lulc.models.prithvi import load_prithvi_encoder
from lulc.models.registry import HPARAM_KEYS, build_model
from lulc.models.weights import WeightsError, sha256_file

__all__ = [
    "HLS_VALID_RANGE",
    "HPARAM_KEYS",
    "MAX_ABS_NORMALISED",
    "BuiltModel",
    "HLSNormalize",
    "Normalization",
    "PrecisionChoice",
    "UnnormalisedInputError",
    "WeightsError",
    "batch_coords_of",
    "build_model",
    "channels_last_convolutions",
    "check_normalised",
    "checkpoint_legend",
    "choose_precision",
    "encoder_layer_id",
    "enforce_fp32_matmul_precision",
    "freeze_encoder",
    "hardware_class",
    "import_terratorch",
    "load_prithvi_encoder",
    "load_trained_model",
    "normalised_bound",
    "resolve_normalization",
    "resolve_precision",
    "save_trained_model",
    "sha256_file",
    "vit_encoder",
]
