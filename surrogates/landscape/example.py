"""The bundled example network: a tanh MLP trained in-run on labels from a random linear teacher.

Inputs :math:`x_i \\sim \\mathcal N(0, I_d)`, labels :math:`y_i = \\arg\\max_c (W x_i)_c` for a fixed
random teacher :math:`W`, cross-entropy, full-batch Adam. The same recipe at size
64-256-256-10 with 2048 samples and 200 steps is the benchmark model of
``scripts/bench_landscape.py``; the CLI default is a smaller version that trains in about a
second and whose Hessian is small enough to be computed densely as a reference.

:func:`digits_classification` is the convolutional benchmark network: a 51 880-parameter tanh
CNN trained on scikit-learn's 8x8 handwritten digits (``scripts/bench_landscape_cli.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import InputError
from ._util import make_generator


@dataclass
class Example:
    """A trained network with its loss and data.

    Attributes:
        model: The trained ``nn.Sequential`` (tanh MLP).
        loss_fn: ``nn.CrossEntropyLoss()``.
        X: Inputs, ``(N, d)``.
        Y: Integer labels, ``(N,)``.
        info: Recipe and final training loss/accuracy.
    """

    model: nn.Module
    loss_fn: nn.Module
    X: torch.Tensor
    Y: torch.Tensor
    info: dict = field(default_factory=dict)


def tanh_mlp(sizes: Sequence[int], seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """``Linear -> tanh -> ... -> Linear`` with layer widths ``sizes`` (PyTorch default init, seeded)."""
    if len(sizes) < 2:
        raise InputError(f"sizes needs at least an input and an output width, got {list(sizes)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.Tanh())
        return nn.Sequential(*layers).to(dtype)


def teacher_data(n_samples: int, d_in: int, n_classes: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    """Standard-normal inputs and argmax labels of a fixed random linear teacher."""
    gen = make_generator(seed)
    W = torch.randn(d_in, n_classes, generator=gen, dtype=torch.float64)
    X = torch.randn(n_samples, d_in, generator=gen, dtype=torch.float64)
    Y = (X @ W).argmax(dim=1)
    return X.to(dtype), Y


def teacher_classification(
    n_samples: int = 2048,
    d_in: int = 64,
    hidden: Sequence[int] = (256, 256),
    n_classes: int = 10,
    steps: int = 200,
    lr: float = 1e-3,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Example:
    """Train a tanh MLP ``d_in -> hidden -> n_classes`` by full-batch Adam on teacher labels.

    Args:
        n_samples: ``N``.
        d_in: Input width.
        hidden: Hidden widths.
        n_classes: Number of classes.
        steps: Full-batch Adam steps.
        lr: Adam learning rate.
        seed: Seed of data, teacher and initial weights.
        dtype: Parameter and input dtype.
    """
    X, Y = teacher_data(n_samples, d_in, n_classes, seed=seed, dtype=dtype)
    model = tanh_mlp([d_in, *hidden, n_classes], seed=seed + 1, dtype=dtype)
    return _train(model, X, Y, steps, lr, {
        "recipe": "tanh MLP on labels of a random linear teacher, full-batch Adam, cross-entropy",
        "sizes": [d_in, *hidden, n_classes], "n_samples": n_samples, "steps": steps, "lr": lr, "seed": seed,
    })


def digits_cnn(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """Tanh CNN for 1x8x8 images: two padded 3x3 convolutions (16, 32 channels), 2x2 average
    pooling, 90 hidden units, 10 classes.

    ``Conv(1->16) -> tanh -> Conv(16->32) -> tanh -> AvgPool(2) -> flatten (512) -> Linear(90) -> tanh
    -> Linear(10)``, 51 880 parameters (PyTorch default init, seeded).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.Tanh(), nn.Conv2d(16, 32, 3, padding=1), nn.Tanh(),
            nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(512, 90), nn.Tanh(), nn.Linear(90, 10),
        ).to(dtype)


def digits_classification(steps: int = 150, lr: float = 2e-3, seed: int = 0, dtype: torch.dtype = torch.float32) -> Example:
    """:func:`digits_cnn` trained by full-batch Adam on all 1797 scikit-learn digits (pixels / 16).

    Needs scikit-learn (the data ship with it; nothing is downloaded).

    Args:
        steps: Full-batch Adam steps.
        lr: Adam learning rate.
        seed: Seed of the initial weights.
        dtype: Parameter and input dtype.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = torch.as_tensor(digits.images / 16.0, dtype=dtype)[:, None]
    Y = torch.as_tensor(digits.target, dtype=torch.int64)
    model = digits_cnn(seed=seed, dtype=dtype)
    return _train(model, X, Y, steps, lr, {
        "recipe": "tanh CNN on scikit-learn's digits (1797 images 8x8, pixels/16), full-batch Adam, cross-entropy",
        "architecture": "conv3x3(16, pad 1)-tanh-conv3x3(32, pad 1)-tanh-avgpool2-linear(90)-tanh-linear(10)",
        "n_samples": int(X.shape[0]), "steps": steps, "lr": lr, "seed": seed,
    })


def _train(model: nn.Module, X: torch.Tensor, Y: torch.Tensor, steps: int, lr: float, info: dict) -> Example:
    """Full-batch Adam on the mean cross-entropy; the info gets parameter count, final loss and accuracy."""
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X), Y)
            loss.backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        out = model(X)
        final = float(loss_fn(out, Y))
        acc = float((out.argmax(1) == Y).double().mean())
    info = {
        **info,
        "dtype": str(X.dtype).replace("torch.", ""),
        "num_params": sum(p.numel() for p in model.parameters()),
        "final_loss": final,
        "final_accuracy": acc,
    }
    return Example(model, loss_fn, X, Y, info)


def bundled_example(seed: int = 0, steps: int = 300, n_samples: int = 512) -> Example:
    """The small default of ``surrogates-landscape``: 8-24-24-4 tanh MLP (~900 parameters), 512 samples."""
    return teacher_classification(
        n_samples=n_samples, d_in=8, hidden=(24, 24), n_classes=4, steps=steps, lr=1e-2, seed=seed
    )
