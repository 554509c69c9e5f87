"""Hand-written models that exercise what real exporters get wrong."""

from __future__ import annotations

import torch
from torch import nn

from model_zoo.registry import zoo_entry


def vector_inputs(width: int) -> object:
    def make(_model: nn.Module, _tier: str, seed: int) -> torch.Tensor:
        return torch.randn(2, width, generator=torch.Generator().manual_seed(seed))

    return make


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x)) + x


class SharedBlockModel(nn.Module):
    """One ``shared`` instance runs before and after a ModuleList of blocks."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.shared = Block(width)
        self.layers = nn.ModuleList([Block(width) for _ in range(2)])
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shared(x)
        for layer in self.layers:
            x = layer(x)
        x = self.shared(x)
        return self.head(x * 0.5)


@zoo_entry("shared_block", family="custom", kind="custom", inputs=vector_inputs(16),
           notes="one module instance called twice")
def shared_block(tier: str) -> nn.Module:
    return SharedBlockModel(width=16 if tier == "tiny" else 512)


class Pair(nn.Module):
    """A container whose forward is never called: its parent reaches in directly."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)


class NestedCallerModel(nn.Module):
    """Calls grandchildren directly (``self.a.fc(x)``), so the containers never run."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.a, self.b = Pair(width), Pair(width)
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b.fc(self.a.fc(x)).relu()
        return self.head(self.a.fc2(x) + self.b.fc2(x))


@zoo_entry("nested_calls", family="custom", kind="custom", inputs=vector_inputs(16),
           notes="grandchild modules called directly; their parents never run")
def nested_calls(tier: str) -> nn.Module:
    return NestedCallerModel(width=16 if tier == "tiny" else 512)
