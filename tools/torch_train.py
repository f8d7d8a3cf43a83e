"""PyTorch training helpers shared by tools/train_default_model.py and tools/train.py.

One training loop for both, so the shipped model and the zoo are trained the same way: Adam,
cross-entropy, mini-batches drawn from a seeded numpy permutation per epoch.
"""
import time

import numpy as np
import torch
import torch.nn as nn


def accuracy(model, x, y, batch=1000):
    """Number of correctly classified rows of x (float32 NCHW) against labels y."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = model(torch.from_numpy(x[i:i + batch]))
            correct += int((out.argmax(1).numpy() == y[i:i + batch]).sum())
    return correct


def logits(model, x, batch=1000):
    """The model's outputs on x as float32."""
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(x[i:i + batch])).numpy())
    return np.concatenate(outs).astype(np.float32)


def fit(model, xtr, ytr, xte, yte, epochs, lr, batch, seed, indent=""):
    """Trains in place; prints the train loss and test accuracy after each epoch. Returns seconds."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    lossf = nn.CrossEntropyLoss()
    rng = np.random.RandomState(seed)
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = rng.permutation(len(xtr))
        tot = 0.0
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            xb, yb = torch.from_numpy(xtr[idx]), torch.from_numpy(ytr[idx])
            opt.zero_grad()
            loss = lossf(model(xb), yb)
            loss.backward()
            opt.step()
            tot += float(loss) * len(idx)
        acc = accuracy(model, xte, yte)
        print("%sepoch %d: train loss %.4f, test acc %d/10000 (%.1fs)"
              % (indent, ep + 1, tot / len(xtr), acc, time.time() - t0), flush=True)
    return time.time() - t0
