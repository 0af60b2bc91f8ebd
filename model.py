"""ResNet-18 for CIFAR-10, written out from scratch.

He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition" (2015),
https://arxiv.org/abs/1512.03385. Each block learns a residual F(x) (the paper's name; not
torch.nn.functional, which the code below imports as F, as PyTorch code does) and outputs
    y = relu(F(x) + shortcut(x)),    F(x) = BN(conv3x3(relu(BN(conv3x3(x)))))
so that a block that has nothing useful to add can learn F = 0 and pass x through:
this is what lets 18 (or 152) layers train as easily as a few.

The CIFAR variant differs from the ImageNet network in its stem only. ImageNet's
224x224 images go through a 7x7 stride-2 conv and a 3x3 stride-2 max-pool, shrinking
them 4x before the first block. A 32x32 CIFAR image shrunk 4x would leave 8x8 feature
maps for the first stage and 1x1 for the last, throwing away most of the little spatial
detail there is. So the stem here is one 3x3 stride-1 conv and no max-pool: the four
stages see 32x32, 16x16, 8x8 and 4x4 maps. With 10 classes the network has exactly
11,173,962 parameters.
"""
from torch import nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut: y = relu(F(x) + shortcut(x))."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        # The convs have no bias: the BN that follows each one adds its own.
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()  # identity, when x and F(x) have the same shape
        if stride != 1 or in_channels != out_channels:
            # Projection shortcut (the paper's option B): a 1x1 conv matches channels and size.
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        # BEGIN SOLUTION
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))
        # END SOLUTION


class ResNet18(nn.Module):

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(  # CIFAR stem: 3x3 conv, stride 1, no max-pool (see above)
            nn.Conv2d(3, 64, 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        # Four stages of two blocks; each later stage halves the size and doubles the channels.
        self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256, 1))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):              # x: (B, 3, 32, 32), normalised
        x = self.stem(x)               # (B, 64, 32, 32)
        x = self.layer1(x)             # (B, 64, 32, 32)
        x = self.layer2(x)             # (B, 128, 16, 16)
        x = self.layer3(x)             # (B, 256, 8, 8)
        x = self.layer4(x)             # (B, 512, 4, 4)
        x = x.mean(dim=(2, 3))         # global average pool: (B, 512)
        return self.fc(x)              # (B, num_classes) logits
