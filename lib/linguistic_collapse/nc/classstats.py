"""``ClassStats``: the per-class statistics of features against labels, for any training loop.

Pass 1 (``add``) accumulates per class the count, the float64 feature sum and the within-class
sum of squared deviations, and the pooled within-class scatter ``sw`` (D, D) of the features
(not of the extra layers) (``linguistic_collapse.nc.accumulate``); optional pass 2 (``add_validation``) counts,
per true class, held-out tokens where the classifier W agrees with the nearest class mean. The
first ``add_validation`` freezes the train means (their hash ties the passes), so a later
``add`` is refused. ``measures`` gives every measure of ``linguistic_collapse.nc.registry`` the passes allow;
``save`` writes the ``stats.safetensors`` format of ``linguistic_collapse.nc.stats_file`` and ``load`` reads it
back verified. ``linguistic_collapse.stages.collect`` streams a model's blocks through this same class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc import stats_file as sf
from linguistic_collapse.nc.accumulate import (
    DEFAULT_CHUNK,
    accumulate_moments_shared,
    class_means,
    means_hash,
    ncc_agreement,
)
from linguistic_collapse.nc.measure import select_measures
from linguistic_collapse.nc.merge import merge_accumulators


class ClassStats:
    """Streaming neural-collapse statistics of ``num_classes`` classes of ``dim``-wide features.

    ``layers``: {index: width} of extra feature sets of the same tokens (e.g. residual streams)
    whose pass-1 moments share the counts (``add(..., layer_features=[...])``).
    """

    def __init__(self, num_classes: int, dim: int, device: str | torch.device = "cpu",
                 layers: Mapping[int, int] | None = None):
        if num_classes < 2 or dim < 1:
            raise UserError(f"ClassStats needs num_classes >= 2 and dim >= 1, got "
                            f"{num_classes} and {dim}")
        self.device = torch.device(device)
        self.layers = tuple(sorted(layers or {}))
        f64 = {"dtype": torch.float64, "device": self.device}
        self.tensors: dict[str, Tensor] = {
            "counts": torch.zeros(num_classes, dtype=torch.long, device=self.device),
            "sums": torch.zeros(num_classes, dim, **f64),
            "sq_dev": torch.zeros(num_classes, **f64),
            "sw": torch.zeros(dim, dim, **f64)}
        for i in self.layers:
            self.tensors[sf.layer_key(i, "sums")] = torch.zeros(num_classes, layers[i], **f64)
            self.tensors[sf.layer_key(i, "sq_dev")] = torch.zeros(num_classes, **f64)
        self.tokens = {1: 0, 2: 0}  # tokens added per pass
        self.blocks = {1: 0, 2: 0}  # per pass: add / add_validation calls, or a file's blocks
        self.W: Tensor | None = None  # (V, D) classifier of pass 2
        self.metadata: dict[str, str] = {}  # of a loaded file
        self._frozen: tuple[Tensor, Tensor] | None = None  # (valid ids (K,), means (K, D))

    # -----------------------------------------------------------------------------------------
    # Accumulation

    @property
    def num_classes(self) -> int:
        return int(self.tensors["counts"].shape[0])

    @property
    def dim(self) -> int:
        return int(self.tensors["sums"].shape[1])

    @property
    def frozen(self) -> bool:
        """True once pass 2 has started: the train means may no longer change."""
        return self._frozen is not None or "val_counts" in self.tensors

    def _batch(self, features: Tensor, labels: Tensor, dim: int, what: str
               ) -> tuple[Tensor, Tensor]:
        if features.ndim != 2 or features.shape[1] != dim:
            raise UserError(f"{what} must be (N, {dim}), got shape {tuple(features.shape)}")
        if labels.shape != (features.shape[0],):
            raise UserError(f"labels must be (N,) = ({features.shape[0]},) like the features, "
                            f"got shape {tuple(labels.shape)}")
        return features.detach().to(self.device), labels.detach().to(self.device, torch.long)

    def add(self, features: Tensor, labels: Tensor,
            layer_features: Sequence[Tensor] = ()) -> None:
        """Pass 1: add a batch of features (N, D) with integer labels (N,) (and the features of
        each of ``layers`` for the same tokens, in that order)."""
        if self.frozen:
            raise UserError("ClassStats.add after add_validation: the train means are frozen "
                            "once pass 2 starts; finish pass 1 first, or start a new ClassStats")
        if len(layer_features) != len(self.layers):
            raise UserError(f"add needs features of the layers {list(self.layers)}, got "
                            f"{len(layer_features)} extra feature sets")
        x, y = self._batch(features, labels, self.dim, "features")
        extra = [self._batch(f, labels, self.tensors[sf.layer_key(i, "sums")].shape[1],
                             f"layer {i} features")[0]
                 for i, f in zip(self.layers, layer_features, strict=True)]
        t = self.tensors
        accumulate_moments_shared(
            [x, *extra], y, t["counts"],
            [t["sums"], *(t[sf.layer_key(i, "sums")] for i in self.layers)],
            [t["sq_dev"], *(t[sf.layer_key(i, "sq_dev")] for i in self.layers)], t.get("sw"))
        self.tokens[1] += int(y.numel())
        self.blocks[1] += 1

    def _freeze(self, W: Tensor) -> tuple[Tensor, Tensor]:
        if self._frozen is None:
            counts = self.tensors["counts"]
            valid = torch.nonzero(counts > 0).squeeze(1)  # (K,)
            if valid.numel() < 2:
                raise UserError(f"pass 2 needs a pass 1 with at least 2 classes seen, got "
                                f"{valid.numel()}; call add on training features first")
            self._frozen = (valid, class_means(counts, self.tensors["sums"])[valid])
            self.tensors.setdefault("val_counts", torch.zeros_like(counts))
            self.tensors.setdefault("val_agree", torch.zeros_like(counts))
        if self.W is None:
            self.W = W
        elif self.W is not W and (self.W.shape != W.shape
                                  or not torch.equal(self.W, W.detach().to(self.W.device))):
            raise UserError("add_validation got another classifier W than in its earlier calls; "
                            "one pass 2 uses one W")
        return self._frozen

    def add_validation(self, features: Tensor, labels: Tensor, W: Tensor,
                       chunk: int = DEFAULT_CHUNK) -> None:
        """Pass 2: for held-out features (N, D) and labels (N,), count per true class the tokens
        where argmax_c <w_c, x> (W (V, D)) equals the nearest train class mean."""
        if tuple(W.shape) != (self.num_classes, self.dim):
            raise UserError(f"W must be (num_classes, dim) = ({self.num_classes}, {self.dim}), "
                            f"got shape {tuple(W.shape)}")
        valid, means = self._freeze(W)
        x, y = self._batch(features, labels, self.dim, "features")
        ncc_agreement(x, y, W.detach().to(self.device), means, valid, self.tensors["val_counts"],
                      self.tensors["val_agree"], chunk)
        self.tokens[2] += int(y.numel())
        self.blocks[2] += 1

    def means(self) -> Tensor:
        """The class means (V, D) float64; rows of classes never seen are zero."""
        return class_means(self.tensors["counts"], self.tensors["sums"])

    # -----------------------------------------------------------------------------------------
    # Measures

    def measures(self, W: Tensor | None = None, which: Sequence[str] | None = None,
                 device: str | torch.device | None = None, tile: int = 2048) -> dict[str, float]:
        """Every registry measure the passes allow (NC1, NC2, GNC2 always; NC3/UNC3 with W,
        default pass 2's; NC4 after pass 2), or only those named in ``which``."""
        W = W if W is not None else self.W
        stats = {k: self.tensors[k] for k in sf.PASS_TENSORS[1] if k in self.tensors}
        if W is not None:
            if tuple(W.shape) != (self.num_classes, self.dim):
                raise UserError(f"W must be ({self.num_classes}, {self.dim}), got "
                                f"{tuple(W.shape)}")
            stats["lm_head"] = W.detach()
        if "val_counts" in self.tensors and int(self.tensors["val_counts"].sum()) > 0:
            stats.update({k: self.tensors[k] for k in sf.PASS_TENSORS[2]})
        return select_measures(stats, which, device or self.device, tile)

    # -----------------------------------------------------------------------------------------
    # Files

    def save(self, path: str | Path, model: str, W: Tensor | None = None,
             metadata: Mapping[str, str] | None = None) -> Path:
        """Write ``path`` in the ``stats.safetensors`` format, hashes filled (``means_hash``,
        ``lm_head_sha256``). ``model``: the model's name; W (default pass 2's) is stored as
        ``lm_head``; ``pass{N}_blocks`` counts the ``add`` calls unless ``metadata`` says."""
        W = W if W is not None else self.W
        tensors = dict(self.tensors)
        meta = {"model": model, "tokenizer": model, "vocab_size": str(self.num_classes),
                "width": str(self.dim)}
        for p in sf.PASSES:
            if p == 1 or "val_counts" in tensors:
                meta.update({f"pass{p}_blocks": str(self.blocks[p]),
                             f"pass{p}_tokens": str(self.tokens[p]),
                             f"pass{p}_shard": self.metadata.get(f"pass{p}_shard", ""),
                             f"pass{p}_split_sha": self.metadata.get(f"pass{p}_split_sha", "")})
        if W is not None:
            tensors["lm_head"] = W.detach().float()
        if self.layers:
            meta["layers"] = ",".join(map(str, self.layers))
        return sf.write_stats(path, tensors, {**self.metadata, **meta, **(metadata or {})})

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Tensor], device: str | torch.device = "cpu",
                     metadata: Mapping[str, str] | None = None) -> ClassStats:
        """A ClassStats holding the accumulators of a stats mapping (``lm_head`` becomes W).

        A mapping without ``sw`` (restricted to some classes, ``linguistic_collapse.nc.subset``) gives one
        without it too: the measures that need it are then left out, never computed from zeros."""
        meta = dict(metadata or {})
        layers = sorted(int(k[len("layer"):-len(".sums")]) for k in tensors
                        if k.startswith("layer") and k.endswith(".sums"))
        meta.setdefault("layers", ",".join(map(str, layers)))
        V, D = tensors["sums"].shape
        out = cls(int(V), int(D), device,
                  {i: int(tensors[sf.layer_key(i, "sums")].shape[1]) for i in layers})
        for key in (*sf.pass1_keys(meta), *sf.PASS_TENSORS[2]):
            if key in tensors:
                out.tensors[key] = tensors[key].to(out.device)
        if "sw" not in tensors:
            del out.tensors["sw"]
        if "lm_head" in tensors:
            out.W = tensors["lm_head"].to(out.device)
        for p in sf.PASSES:
            out.tokens[p] = int(meta.get(f"pass{p}_tokens", 0))
            out.blocks[p] = int(meta.get(f"pass{p}_blocks", 0))
        out.metadata = {k: v for k, v in meta.items() if v or k != "layers"}
        return out

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> ClassStats:
        """Read a stats file verified: a finished one by ``linguistic_collapse.nc.stats_file.read_stats``; one
        holding pass 1 alone after its ``means_hash`` (and stored LM head) check out."""
        meta = sf.load_stats_metadata(path)
        if sf.done_passes(meta) == {p: "" for p in sf.PASSES}:
            tensors, meta = sf.read_stats(path)
        else:
            tensors = sf.check_train_pass(path, meta)
        return cls.from_tensors(tensors, device, meta)

    def merge(self, other: ClassStats) -> ClassStats:
        """Statistics of both parts' tokens (shards): pass 1 by Chan's formula, or, when both
        are in pass 2 with the same train means and W, their validation counts added."""
        if (self.num_classes, self.dim, self.layers) != (other.num_classes, other.dim,
                                                         other.layers):
            raise UserError(f"cannot merge ClassStats of (classes, dim, layers) "
                            f"{(other.num_classes, other.dim, other.layers)} into "
                            f"{(self.num_classes, self.dim, self.layers)}")
        if self.frozen or other.frozen:
            same = (self.frozen and other.frozen and means_hash(self.means().cpu())
                    == means_hash(other.means().cpu()) and self.W is not None
                    and other.W is not None and torch.equal(self.W.cpu(), other.W.cpu()))
            if not same:
                raise UserError("cannot merge: pass-2 parts must share their train means and W "
                                "(merge pass-1 shards first, then run pass 2 on the merged means)")
            keys = sf.PASS_TENSORS[2]
        else:
            keys = tuple(k for k in self.tensors if k in other.tensors and k in sf.pass1_keys(
                {"layers": ",".join(map(str, self.layers))}))
        merged = dict(self.tensors)
        if "sw" not in other.tensors:  # a part without the pooled scatter: the union has none
            merged.pop("sw", None)
        merge_accumulators(merged, {k: v.to(self.device) for k, v in other.tensors.items()},
                              keys)
        out = ClassStats.from_tensors(merged, self.device, self.metadata)
        out.W = self.W
        out._frozen = self._frozen
        for p in sf.PASSES:
            out.tokens[p] = self.tokens[p] + (other.tokens[p] if p == 2 or not self.frozen
                                              else 0)
            out.blocks[p] = self.blocks[p] + (other.blocks[p] if p == 2 or not self.frozen
                                                else 0)
        return out
