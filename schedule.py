"""The learning-rate schedule: constant, or cosine annealing.

Loshchilov and Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts" (2016),
https://arxiv.org/abs/1608.03983, without the restarts: over one run of T epochs the rate
eta_t falls from eta_max (lr_max below) towards eta_min (lr_min) along half a cosine,

    eta_t = eta_min + 1/2 (eta_max - eta_min) (1 + cos(pi t / T)),    t = 0, 1, ..., T - 1

slowly at first (big steps while the network is far from any minimum), fastest in the
middle, and slowly again at the end, where small steps settle it into a minimum. The rate
is set once per epoch, as torch.optim.lr_scheduler.CosineAnnealingLR stepped each epoch does.
"""
import math


def cosine_lr(epoch, epochs, lr_max, lr_min=0.0):
    """The learning rate for epoch `epoch` (0-based) of `epochs`."""
    # BEGIN SOLUTION
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * epoch / epochs))
    # END SOLUTION


def lr_at(epoch, epochs, lr, cosine):
    """The rate a run uses in an epoch: the constant schedule is the trivial case."""
    return cosine_lr(epoch, epochs, lr) if cosine else lr
