"""Classifier heads over sentence embeddings, stored as plain numpy layers.

Two candidates are trained and the better one on the validation split is kept: scikit-learn's
multinomial logistic regression and the seeds' 3-layer MLP (torch). Either is saved as a list of
(weight, bias) layers with ReLU between them, so inference is a few numpy matmuls: no torch or
pickle at serving time, and the file size is the head's real size.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Head:
    kind: str  # logistic | mlp
    layers: list[tuple[np.ndarray, np.ndarray]]  # (in x out weight, out bias); ReLU between layers

    @property
    def inputs(self) -> int:
        return int(self.layers[0][0].shape[0])

    def logits(self, x) -> np.ndarray:
        """x: dense rows, or scipy sparse rows (embedding + lexical features; the product is dense)."""
        h = x if hasattr(x, "tocsr") else np.asarray(x, dtype=np.float32)
        w, b = self.layers[0]
        return self._after_first_layer(h @ w + b)

    def logits_parts(self, dense: np.ndarray, extra) -> np.ndarray:
        """The logits of the row [dense | extra] without building it: the first layer's weight rows are split
        at the dense width, each part multiplied by its own slice (`extra`: scipy sparse rows, e.g. the
        lexical features). Same logits as `logits(hstack([dense, extra]))`; a served query skips the per-call
        sparse hstack of its embedding (~1 ms of a 5-ms decide budget)."""
        dense = np.asarray(dense, dtype=np.float32)
        width = dense.shape[1]
        w, b = self.layers[0]
        return self._after_first_layer(dense @ w[:width] + np.asarray(extra @ w[width:]) + b)

    def _after_first_layer(self, h: np.ndarray) -> np.ndarray:
        """The remaining layers, each after a ReLU (none for the one-layer logistic head)."""
        for w, b in self.layers[1:]:
            h = np.maximum(h, 0.0) @ w + b
        return h

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return self._softmax(self.logits(x))

    def probabilities_parts(self, dense: np.ndarray, extra) -> np.ndarray:
        return self._softmax(self.logits_parts(dense, extra))

    @staticmethod
    def _softmax(z: np.ndarray) -> np.ndarray:
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def save(self, path: Path) -> None:
        arrays = {f"w{i}": w for i, (w, _) in enumerate(self.layers)}
        arrays |= {f"b{i}": b for i, (_, b) in enumerate(self.layers)}
        np.savez(path, kind=np.array(self.kind), **arrays)

    @classmethod
    def load(cls, path: Path) -> "Head":
        with np.load(path, allow_pickle=False) as data:
            count = sum(1 for k in data.files if k.startswith("w"))
            layers = [(data[f"w{i}"].astype(np.float32), data[f"b{i}"].astype(np.float32)) for i in range(count)]
            return cls(str(data["kind"]), layers)


def train_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, c: float = 10.0, seed: int = 0,
                   sample_weight: np.ndarray | None = None, class_weight: str | None = None) -> Head:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=2000, random_state=seed, class_weight=class_weight).fit(
        x, y, sample_weight=sample_weight)
    weight = np.zeros((x.shape[1], n_classes), dtype=np.float32)
    bias = np.full(n_classes, -1e4, dtype=np.float32)  # a class absent from training is never predicted
    if len(model.classes_) == 2:  # binary: sklearn keeps one weight vector, the logit of the second class
        weight[:, model.classes_[0]], bias[model.classes_[0]] = 0.0, 0.0
        weight[:, model.classes_[1]], bias[model.classes_[1]] = model.coef_[0], model.intercept_[0]
    else:
        weight[:, model.classes_] = model.coef_.T
        bias[model.classes_] = model.intercept_
    return Head("logistic", [(weight, bias)])


def train_mlp(x: np.ndarray, y: np.ndarray, n_classes: int, hidden: tuple[int, int] = (256, 128),
              epochs: int = 40, lr: float = 1e-3, weight_decay: float = 1e-4, dropout: float = 0.1,
              seed: int = 0) -> Head:
    """The seeds' 3-layer MLP (two hidden layers), full-batch-free minibatch Adam on CPU."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    sizes = [x.shape[1], *hidden, n_classes]
    blocks = []
    for i in range(len(sizes) - 1):
        blocks.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            blocks += [nn.ReLU(), nn.Dropout(dropout)]
    net = nn.Sequential(*blocks)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    xs, ys = torch.from_numpy(np.asarray(x, dtype=np.float32)), torch.from_numpy(np.asarray(y, dtype=np.int64))
    generator = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(xs), generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(xs[batch]), ys[batch]).backward()
            optimizer.step()
    linears = [m for m in net if isinstance(m, nn.Linear)]
    return Head("mlp", [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in linears])
