"""Backbones returning C3, C4, C5 (and C2 for K-Net's neck): torchvision ResNet (the paper's) and light families."""
