"""``ClassStats``: the per-class statistics of features against labels, for any training loop.

Pass 1 (``add``) accumulates per class the count, the float64 feature sum and the within-class
sum of squared deviations, and the pooled within-class scatter ``sw`` (D, D) of the features
(not of the extra layers) (``linguistic_collapse.nc.accumulate``); optional pass 2 (``add_validation``) counts,
per true class, held-out tokens where the classifier W agrees with the nearest class mean. The
first ``add_validation`` freezes the train means (their hash ties the passes), so a later
``add`` is refused. ``measures`` gives every measure of ``linguistic_collapse.nc.registry`` the passes allow;
``save`` writes the ``stats.safetensors`` format of ``linguistic_collapse.nc.stats_file`` and ``load`` reads it
back verified; ``all_reduce_`` combines the statistics of torch.distributed ranks in place.
``linguistic_collapse.pipeline.collect`` streams a model's blocks through this same class.

Hugging Face conventions at the boundary: labels equal to ``ignore_index`` (-100, as HF's
losses) are skipped; any other negative, float or bool label is refused. The classifier W of
pass 2 may have any floating dtype: it is copied as float64 once, at the first
``add_validation``, and a W whose values change afterwards is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import check_out
from linguistic_collapse.nc import stats_file as sf
from linguistic_collapse.nc.accumulate import (
    DEFAULT_CHUNK,
    accumulate_moments_shared,
    class_means,
    means_hash,
    ncc_agreement,
)
from linguistic_collapse.nc.distributed import all_reduce_stats
from linguistic_collapse.nc.measure import measure_stats
from linguistic_collapse.nc.merge import merge_accumulators

IGNORE_INDEX = -100  # the label Hugging Face's losses skip (CrossEntropyLoss's ignore_index)


def check_labels(labels: Tensor, ignore_index: int | None, what: str) -> Tensor | None:
    """The (N,) bool mask of labels to keep (None: keep all), after refusing in one line the
    labels that are no class id: float, bool, complex, or negative other than ``ignore_index``."""
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        flat = labels.flatten()
        if labels.is_floating_point() and bool((flat != flat.round()).any()):
            flat = flat[flat != flat.round()]  # name a value that is no whole number
        example = ("none" if not labels.numel() else repr(flat[0].item())
                   if labels.dtype == torch.bool else f"{flat[0].item():.6g}")
        raise UserError(f"{what}: labels must be integer class ids, got {labels.dtype} labels "
                        f"(e.g. {example}); pass the token ids as an integer tensor")
    negative = labels < 0
    if not bool(negative.any()):
        return None
    keep = ~negative
    bad = negative & (labels != ignore_index) if ignore_index is not None else negative
    if bool(bad.any()):
        raise UserError(f"{what}: label {int(labels[bad][0])} is negative; only ignore_index="
                        f"{ignore_index} is skipped (set ClassStats(..., ignore_index=...))")
    return keep


class ClassStats:
    """Streaming neural-collapse statistics of ``num_classes`` classes of ``dim``-wide features.

    ``layers``: {index: width} of extra feature sets of the same tokens (e.g. residual streams)
    whose pass-1 moments share the counts (``add(..., layer_features=[...])``).
    ``ignore_index``: the label skipped by ``add`` and ``add_validation`` (None: none).
    """

    def __init__(self, num_classes: int, dim: int, device: str | torch.device = "cpu",
                 layers: Mapping[int, int] | None = None, ignore_index: int | None = IGNORE_INDEX):
        if num_classes < 2 or dim < 1:
            raise UserError(f"ClassStats needs num_classes >= 2 and dim >= 1, got "
                            f"{num_classes} and {dim}")
        self.device = torch.device(device)
        self.ignore_index = ignore_index
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
        self.reduced: set[int] = set()  # passes already combined across ranks (all_reduce_)

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

    def _batch(self, features: Tensor, labels: Tensor, dim: int, what: str,
               keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(features, labels) on this device, checked, rows of ``keep`` (None: all) only."""
        if features.ndim != 2 or features.shape[1] != dim:
            raise UserError(f"{what} must be (N, {dim}), got shape {tuple(features.shape)}")
        if labels.shape != (features.shape[0],):
            raise UserError(f"{what.split()[0]}'s labels must be (N,) = ({features.shape[0]},) "
                            f"like the features, got shape {tuple(labels.shape)}")
        if not features.is_floating_point():
            raise UserError(f"{what}: features must be floating point, got {features.dtype}")
        x, y = features.detach(), labels.detach()
        if keep is not None:
            x, y = x[keep.to(x.device)], y[keep.to(y.device)]
        return x.to(self.device), y.to(self.device, torch.long)

    def add(self, features: Tensor, labels: Tensor,
            layer_features: Sequence[Tensor] = ()) -> None:
        """Pass 1: add a batch of features (N, D) with integer labels (N,) (and the features of
        each of ``layers`` for the same tokens, in that order); labels equal to
        ``ignore_index`` are skipped."""
        if self.frozen:
            raise UserError("ClassStats.add after add_validation: the train means are frozen "
                            "once pass 2 starts; finish pass 1 first, or start a new ClassStats")
        if 1 in self.reduced:
            raise UserError("ClassStats.add after all_reduce_: pass 1 is already combined "
                            "across ranks; add every batch before calling all_reduce_")
        if len(layer_features) != len(self.layers):
            raise UserError(f"ClassStats.add needs layer_features of the layers "
                            f"{list(self.layers)}, got {len(layer_features)} extra feature sets")
        keep = check_labels(labels, self.ignore_index, "ClassStats.add")
        x, y = self._batch(features, labels, self.dim, "add features", keep)
        extra = [self._batch(f, labels, self.tensors[sf.layer_key(i, "sums")].shape[1],
                             f"add layer_features[{j}] (layer {i})", keep)[0]
                 for j, (i, f) in enumerate(zip(self.layers, layer_features, strict=True))]
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
                raise UserError(f"ClassStats.add_validation needs a pass 1 with at least 2 "
                                f"classes seen, got {valid.numel()}; call add on training "
                                "features first")
            self._frozen = (valid, class_means(counts, self.tensors["sums"])[valid])
            self.tensors.setdefault("val_counts", torch.zeros_like(counts))
            self.tensors.setdefault("val_agree", torch.zeros_like(counts))
        given = W.detach().to(self.device, torch.float64)
        if self.W is None:
            self.W = given.clone() if given.data_ptr() == W.data_ptr() else given  # a copy
        elif not torch.equal(self.W, given):
            raise UserError("ClassStats.add_validation got another classifier W than in its "
                            "earlier calls (other values: changed in place by training?); one "
                            "pass 2 uses one W: pass the same values, e.g. W.detach().clone()")
        return self._frozen

    def add_validation(self, features: Tensor, labels: Tensor, W: Tensor,
                       chunk: int = DEFAULT_CHUNK) -> None:
        """Pass 2: for held-out features (N, D) and labels (N,), count per true class the tokens
        where argmax_c <w_c, x> (W (V, D), any floating dtype) equals the nearest train class
        mean; labels equal to ``ignore_index`` are skipped."""
        if tuple(W.shape) != (self.num_classes, self.dim) or not W.is_floating_point():
            raise UserError(f"ClassStats.add_validation's W must be a floating (num_classes, "
                            f"dim) = ({self.num_classes}, {self.dim}) tensor, got "
                            f"{tuple(W.shape)} {W.dtype}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise UserError(f"ClassStats.add_validation's chunk must be an integer >= 1 (classes "
                            f"per score tile), got {chunk!r}")
        if 2 in self.reduced:
            raise UserError("ClassStats.add_validation after all_reduce_ of pass 2: add every "
                            "validation batch before calling all_reduce_")
        keep = check_labels(labels, self.ignore_index, "ClassStats.add_validation")
        valid, means = self._freeze(W)
        x, y = self._batch(features, labels, self.dim, "add_validation features", keep)
        ncc_agreement(x, y, self.W, means, valid, self.tensors["val_counts"],
                      self.tensors["val_agree"], chunk)
        self.tokens[2] += int(y.numel())
        self.blocks[2] += 1

    def means(self) -> Tensor:
        """The class means (V, D) float64; rows of classes never seen are zero."""
        return class_means(self.tensors["counts"], self.tensors["sums"])

    # -----------------------------------------------------------------------------------------
    # Measures

    def measures(self, W: Tensor | None = None, which: Sequence[str] | None = None,
                 device: str | torch.device | None = None, tile: int = 2048) -> dict:
        """Every registry measure the passes allow (NC1, NC2, GNC2 always; NC3/UNC3 with W,
        default pass 2's; NC4 after pass 2), or only those named in ``which``; a value the
        statistics leave undefined is NaN, with its reason under ``undefined``."""
        W = W if W is not None else self.W
        stats = {k: self.tensors[k] for k in sf.PASS_TENSORS[1] if k in self.tensors}
        if W is not None:
            if tuple(W.shape) != (self.num_classes, self.dim) or not W.is_floating_point():
                raise UserError(f"ClassStats.measures' W must be a floating ({self.num_classes}, "
                                f"{self.dim}) tensor, got {tuple(W.shape)} {W.dtype}")
            stats["lm_head"] = W.detach().to(self.device, torch.float64)
        if "val_counts" in self.tensors and int(self.tensors["val_counts"].sum()) > 0:
            stats.update({k: self.tensors[k] for k in sf.PASS_TENSORS[2]})
        out = measure_stats(stats, which, device=device or self.device, tile=tile)[0]
        del out["num_classes"]
        return out

    def all_reduce_(self, group=None) -> ClassStats:
        """Combine, in place, the statistics of every rank of a torch.distributed ``group``
        (default: the world), exactly as if one process had added every rank's batches: call
        it on every rank after pass 1 (before ``add_validation``: pass 2 needs the same means
        everywhere), and again after pass 2. Returns ``self``."""
        all_reduce_stats(self, group)
        return self

    # -----------------------------------------------------------------------------------------
    # Files

    def save(self, path: str | Path, model: str, W: Tensor | None = None,
             metadata: Mapping[str, str] | None = None) -> Path:
        """Write ``path`` in the ``stats.safetensors`` format, hashes filled (``means_hash``,
        ``lm_head_sha256``). ``model``: the model's name; W (default pass 2's) is stored as
        ``lm_head``; ``pass{N}_blocks`` counts the ``add`` calls unless ``metadata`` says.
        Writes only a new file or a stats file (the CLI's ``--out`` rule): never a model's
        weights, config or another tool's file."""
        check_out(Path(path), suffix=".safetensors", ours=sf.is_stats_file,
                  flag="ClassStats.save path")
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
            out.W = tensors["lm_head"].to(out.device, torch.float64)
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
        """Statistics of both parts' tokens (shards of one model): pass 1 by Chan's formula, or,
        when both are in pass 2 with the same train means and W, their validation counts added.
        Parts of another model (another W, or another recorded model identity) are refused."""
        if (self.num_classes, self.dim, self.layers) != (other.num_classes, other.dim,
                                                         other.layers):
            raise UserError(f"ClassStats.merge: cannot merge statistics of (classes, dim, "
                            f"layers) {(other.num_classes, other.dim, other.layers)} into "
                            f"{(self.num_classes, self.dim, self.layers)}")
        if self.W is not None and other.W is not None and not torch.equal(
                self.W, other.W.to(self.W.device)):
            raise UserError("ClassStats.merge: the parts have different classifiers W, so they "
                            "are statistics of different models; merge shards of one model")
        for key in (*sf.MODEL_KEYS, *sf.PROVENANCE_KEYS):
            mine, theirs = self.metadata.get(key), other.metadata.get(key)
            if mine and theirs and mine != theirs:
                raise UserError(f"ClassStats.merge: the parts record another {key} "
                                f"({theirs[:16]!r} vs {mine[:16]!r}), so they are statistics "
                                "of different models or inputs; merge shards of one model")
        if self.frozen or other.frozen:
            same = (self.frozen and other.frozen and means_hash(self.means().cpu())
                    == means_hash(other.means().cpu()) and self.W is not None
                    and other.W is not None and torch.equal(self.W.cpu(), other.W.cpu()))
            if not same:
                raise UserError("ClassStats.merge: pass-2 parts must share their train means and "
                                "W (merge pass-1 shards first, then run add_validation on the "
                                "merged means)")
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
        out.ignore_index = self.ignore_index
        out.W = self.W if self.W is not None else other.W
        out._frozen = self._frozen
        for p in sf.PASSES:
            out.tokens[p] = self.tokens[p] + (other.tokens[p] if p == 2 or not self.frozen
                                              else 0)
            out.blocks[p] = self.blocks[p] + (other.blocks[p] if p == 2 or not self.frozen
                                                else 0)
        return out
