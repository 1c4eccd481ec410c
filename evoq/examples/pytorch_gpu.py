"""A PyTorch trial for ``rq worker`` on GPU boxes (one worker per GPU).

On each GPU box, start one worker per GPU, pinning each to its device::

    for gpu in 0 1 2 3; do
      CUDA_VISIBLE_DEVICES=$gpu EVOQ_ALLOW='evoq.examples.pytorch_gpu:train' \\
        evoq worker --redis-url "$REDIS_URL" --worker-class worker &
    done

``--worker-class worker`` (RQ's ``Worker``) forks a work horse per trial: a crashed or killed
trial frees its GPU memory with its process. Do not touch CUDA in the worker's parent process
(nothing here does before the fork: torch is imported inside :func:`train`).

Spec: ``trial = "evoq.examples.pytorch_gpu:train"`` with a space such as::

    [space]
    width = [64, 128, 256, 512]
    depth = [1, 2, 3]
    lr = { _type = "loguniform", _value = [1e-4, 1e-1] }
    epochs = [5, 10]

Needs ``torch`` (not installed by evoq). On a machine without a GPU it trains on the CPU.
"""

from __future__ import annotations

from typing import Any


def train(config: dict[str, Any]) -> float:
    """Train an MLP on the digits data with PyTorch; return held-out accuracy."""
    import torch
    from torch import nn

    from .digits import _data

    device = "cuda" if torch.cuda.is_available() else "cpu"
    x_train, x_val, y_train, y_val = (torch.as_tensor(a) for a in _data())
    x_train, x_val = x_train.float().to(device), x_val.float().to(device)
    y_train, y_val = y_train.long().to(device), y_val.long().to(device)
    layers: list[nn.Module] = []
    width_in = x_train.shape[1]
    for _ in range(int(config["depth"])):
        layers += [nn.Linear(width_in, int(config["width"])), nn.ReLU()]
        width_in = int(config["width"])
    model = nn.Sequential(*layers, nn.Linear(width_in, 10)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(config["lr"]))
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(int(config["epochs"])):
        for idx in torch.randperm(len(x_train), device=device).split(64):
            opt.zero_grad()
            loss_fn(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float((model(x_val).argmax(1) == y_val).float().mean())
