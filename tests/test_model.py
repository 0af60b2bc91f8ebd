"""model.py promises the CIFAR ResNet-18: torchvision's ResNet-18 with a 3x3 stem and no max-pool."""
import pytest
import torch
from torch import nn
import torchvision

from model import ResNet18


def torchvision_cifar_resnet18():
    """The reference: torchvision's ResNet-18 with the CIFAR stem swapped in."""
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def test_parameter_count_is_the_known_one():
    count = sum(p.numel() for p in ResNet18().parameters())
    assert count == 11_173_962
    assert count == sum(p.numel() for p in torchvision_cifar_resnet18().parameters())


@pytest.mark.exercise('BasicBlock.forward')
def test_output_is_one_logit_per_class():
    assert ResNet18()(torch.randn(5, 3, 32, 32)).shape == (5, 10)
    assert ResNet18(num_classes=100)(torch.randn(2, 3, 32, 32)).shape == (2, 100)


@pytest.mark.exercise('BasicBlock.forward')
def test_computes_what_torchvision_computes_with_the_same_weights():
    torch.manual_seed(0)
    ours, reference = ResNet18(), torchvision_cifar_resnet18()
    # Same layers in the same order: copy the weights across by position, checking each shape.
    theirs = reference.state_dict()
    assert len(ours.state_dict()) == len(theirs)
    for (_, mine), name in zip(ours.state_dict().items(), theirs):
        assert mine.shape == theirs[name].shape, name
        theirs[name] = mine
    reference.load_state_dict(theirs)
    x = torch.randn(4, 3, 32, 32)
    for train in (True, False):  # batch statistics, then running statistics
        ours.train(train), reference.train(train)
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5, msg=lambda m: first_difference(
            ours, reference, x) + f'\n({"training" if train else "evaluation"} mode) {m}')


def first_difference(ours, reference, x):
    """Where the two networks first part, block by block: the name of the first residual block
    whose output differs from the reference's, given the same input, and by how much."""
    seen = {}
    hooks = [module.register_forward_hook(lambda m, i, o, name=name, net=net: seen.setdefault((net, name), o))
             for net, model in (('ours', ours), ('theirs', reference))
             for name, module in model.named_modules() if name.count('.') == 1 and name.startswith('layer')]
    with torch.no_grad():
        ours(x), reference(x)
    for hook in hooks:
        hook.remove()
    for (net, name), out in seen.items():
        if net == 'ours' and not torch.allclose(out, seen[('theirs', name)], rtol=1e-5, atol=1e-5):
            return (f'the output of residual block {name} ({type(dict(ours.named_modules())[name]).__name__}.forward) first '
                    f'differs from torchvision\'s, by up to {(out - seen[("theirs", name)]).abs().max():.3g}')
    return 'every residual block agrees with torchvision\'s: the difference is outside them'


@pytest.mark.exercise('BasicBlock.forward')
def test_gradients_reach_every_parameter():
    net = ResNet18()
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    none = [name for name, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not none, f'no gradient reached {", ".join(none[:5])}{" and more" * (len(none) > 5)}: ' \
                     f'is each block\'s output computed from every one of its layers, shortcut included?'
