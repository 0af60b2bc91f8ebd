"""schedule.py promises the cosine annealing of SGDR without restarts, stepped once per epoch."""
import math

import pytest
import torch

from schedule import cosine_lr, lr_at


@pytest.mark.exercise('cosine_lr')
@pytest.mark.parametrize('epochs, lr_max, lr_min', [(300, 0.01, 0.0), (15, 0.1, 0.0), (50, 0.05, 1e-4)])
def test_cosine_equals_torch_cosine_annealing_over_a_whole_run(epochs, lr_max, lr_min):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr_max)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr_min)
    for epoch in range(epochs):
        ours, theirs = cosine_lr(epoch, epochs, lr_max, lr_min), optimizer.param_groups[0]['lr']
        assert ours == pytest.approx(theirs, rel=1e-12, abs=0), f'epoch {epoch} of {epochs}: ours {ours}, torch\'s {theirs}'
        optimizer.step()
        scheduler.step()


@pytest.mark.exercise('cosine_lr')
def test_cosine_by_hand():
    assert cosine_lr(0, 300, 0.01) == 0.01                           # starts at lr_max
    assert cosine_lr(150, 300, 0.01) == pytest.approx(0.005)         # half way: the mean of max and min
    assert cosine_lr(75, 300, 0.01) == pytest.approx(0.005 * (1 + math.sqrt(0.5)))
    assert cosine_lr(300, 300, 0.01, 0.001) == pytest.approx(0.001)  # would end at lr_min


@pytest.mark.exercise('cosine_lr')
def test_constant_schedule_is_the_trivial_case():
    assert [lr_at(e, 15, 0.1, cosine=False) for e in range(15)] == [0.1] * 15
    assert lr_at(7, 15, 0.1, cosine=True) == cosine_lr(7, 15, 0.1)


# BEGIN HIDDEN TESTS
@pytest.mark.exercise('cosine_lr')
@pytest.mark.parametrize('epochs', [1, 2, 7])
def test_cosine_falls_from_lr_max_towards_lr_min_and_never_rises(epochs):
    """Hidden from the handout, it counts when the class is graded: a short run too starts at lr_max
    and falls, epoch by epoch, within [lr_min, lr_max]."""
    rates = [cosine_lr(e, epochs, 0.1, 0.01) for e in range(epochs)]
    assert rates[0] == 0.1 and all(0.01 <= r <= 0.1 for r in rates), rates
    assert all(later < earlier for earlier, later in zip(rates, rates[1:])), rates
# END HIDDEN TESTS
