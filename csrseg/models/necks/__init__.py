"""Necks: C3-C5 -> one stride-8 feature. ``fusion`` (CSR + D2S, the paper's) and ``fpn_semantic`` (K-Net's)."""
