"""Write the trained heads' artefacts (IDF, weights, metadata) atomically and bit-for-bit.

Part of ``python -m evals.train_classifiers``: ``idf.npy`` and ``<head>.npy`` +
``<head>.json`` in ``nodes/guards/models/`` (or ``--out-dir``), with stable JSON and ``.npy``
encodings so the same seed and data give identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from evals.classifier_fit import (
    HeadResult,
)
from nodes.guards.classifiers import (
    Featurizer,
)

__all__ = ["write_artefacts"]


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _npy_bytes(arr: npt.NDArray[np.float32]) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr, dtype="<f4"), allow_pickle=False)
    return buf.getvalue()


def _write(out_dir: Path, name: str, payload: bytes) -> str:
    tmp = out_dir / f".{name}.tmp"
    tmp.write_bytes(payload)
    os.replace(tmp, out_dir / name)
    return hashlib.sha256(payload).hexdigest()


def write_artefacts(
    results: Sequence[HeadResult],
    featurizer: Featurizer,
    out_dir: Path,
    provenance: Mapping[str, Any],
) -> dict[str, str]:
    """Write ``idf.npy`` and ``<head>.npy`` + ``<head>.json`` atomically; return name -> sha256."""
    out_dir.mkdir(parents=True, exist_ok=True)
    assert featurizer.idf is not None
    digests: dict[str, str] = {"idf.npy": _write(out_dir, "idf.npy", _npy_bytes(featurizer.idf))}
    assert digests["idf.npy"] == featurizer.idf_sha256
    for res in results:
        npy = _npy_bytes(res.weights)
        npy_sha = hashlib.sha256(npy).hexdigest()
        meta = {
            "format_version": 1,
            "name": res.config.name,
            "description": res.config.description,
            "score": "calibrated probability of the positive class at a class-balanced prior",
            "features": {
                **res.classifier.spec.to_dict(),
                "idf": {
                    "file": "idf.npy",
                    "sha256": featurizer.idf_sha256,
                    "formula": "ln((1 + N) / (1 + df)) + 1 over the distinct training-split "
                    "texts of every head",
                },
            },
            "weights": {
                "file": f"{res.config.name}.npy",
                "dtype": "float32 (little-endian .npy, no pickle)",
                "shape": [int(res.weights.shape[0])],
                "sha256": npy_sha,
                "nonzero": int(np.count_nonzero(res.weights)),
            },
            "bias": res.bias,
            "pooling": res.classifier.pooling,
            "pooling_doc": "max_segments: logit = max over the whole text and each sentence/line "
            "(nodes.guards.classifiers.segments, at most MAX_SEGMENTS); none: whole text only",
            "thresholds": {
                "block": res.classifier.thresholds.block,
                "escalate": res.classifier.thresholds.escalate,
            },
            **res.meta,
            "provenance": provenance,
        }
        digests[f"{res.config.name}.npy"] = _write(out_dir, f"{res.config.name}.npy", npy)
        digests[f"{res.config.name}.json"] = _write(
            out_dir, f"{res.config.name}.json", _json_bytes(meta)
        )
    return dict(sorted(digests.items()))
