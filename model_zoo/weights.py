"""Seeded weights for zoo models: unique content, normal numerics."""

from __future__ import annotations

import torch


def randomize_parameters(model: torch.nn.Module, seed: int = 0, scale: float = 0.02) -> None:
    """Add seeded noise to every parameter (and BatchNorm statistic) so content is unique.

    Fresh models have many identical tensors (LayerNorm ones, zero biases);
    exporters deduplicate those and content matching becomes ambiguous.
    The noise is small, so the model's numerics stay in a normal range.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dtype.is_floating_point:
                noise = torch.randn(param.shape, generator=generator) * scale
                param.add_(noise.to(param.dtype))
        # Fresh running statistics (mean 0, var 1) make a BatchNorm folded into
        # its Conv reproduce the BN bias exactly, a false content match.
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._NormBase) and \
                    module.running_mean is not None:
                stats = torch.randn(module.running_mean.shape, generator=generator)
                module.running_mean.add_(stats * scale)
                module.running_var.add_(stats.abs() * scale)
