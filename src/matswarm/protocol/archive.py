"""The final model archive ("uploading"): safetensors weights with a JSON model card inside.

One blob holds both, so one content id (recorded on the ledger) pins the weights and everything
a user needs to apply them correctly: feature names and order, the consortium's scaling
statistics, the target and its unit, per-organisation and global metrics, participants, the
aggregation rule, ledger transaction ids and attestation quotes.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from matswarm.models.base import RegressionModel
from matswarm.protocol.codec import CodecError

ARCHIVE_FORMAT = "matswarm-model/v1"


def build_archive(model: RegressionModel, card: dict[str, Any]) -> bytes:
    """Weights of ``model`` (its current parameters) plus ``card`` as one safetensors blob."""
    tensors = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
    meta = {"format": ARCHIVE_FORMAT, "model_card": json.dumps(card, sort_keys=True)}
    return st_save(tensors, metadata=meta)


def read_archive(blob: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(weights, model_card)`` of an archive; raises :class:`CodecError` if it is not one."""
    try:
        tensors = st_load(blob)
        header_len = int.from_bytes(blob[:8], "little")
        meta = json.loads(blob[8 : 8 + header_len]).get("__metadata__") or {}
        if meta.get("format") != ARCHIVE_FORMAT:
            raise CodecError(f"not a matswarm model archive (format {meta.get('format')!r})")
        return tensors, json.loads(meta["model_card"])
    except (ValueError, KeyError) as exc:
        raise CodecError(f"not a matswarm model archive: {exc}") from None


def flat_parameters(model: RegressionModel, weights: dict[str, np.ndarray]) -> np.ndarray:
    """Load archived ``weights`` into ``model`` and return its flat parameter vector."""
    import torch

    state = {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}
    model.load_state_dict(state, strict=True)
    return model.get_flat()
