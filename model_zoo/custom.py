"""Hand-written models that exercise what real exporters get wrong."""

from __future__ import annotations

import torch
from torch import nn

from model_zoo.registry import zoo_entry

# Feature width per tier, shared by each builder and its input maker.
WIDTH = {"tiny": 16, "full": 512}


def vector_inputs(_model: nn.Module, tier: str, seed: int) -> torch.Tensor:
    return torch.randn(2, WIDTH[tier], generator=torch.Generator().manual_seed(seed))


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


@zoo_entry("shared_block", family="custom", kind="custom", inputs=vector_inputs,
           notes="one module instance called twice")
def shared_block(tier: str) -> nn.Module:
    return SharedBlockModel(width=WIDTH[tier])


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


@zoo_entry("nested_calls", family="custom", kind="custom", inputs=vector_inputs,
           notes="grandchild modules called directly; their parents never run")
def nested_calls(tier: str) -> nn.Module:
    return NestedCallerModel(width=WIDTH[tier])


class MeanGate(nn.Module):
    """Data-dependent control flow: which branch runs depends on the input's values."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.up = nn.Linear(width, width)
        self.down = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            return self.up(x)
        return self.down(x)


@zoo_entry("mean_gate", family="custom", kind="custom", inputs=vector_inputs,
           notes="if x.mean() > 0: tracing freezes one branch; dynamo and FX refuse it")
def mean_gate(tier: str) -> nn.Module:
    return MeanGate(width=WIDTH[tier])


class TiedLM(nn.Module):
    """An embedding and an output projection that share one weight tensor."""

    def __init__(self, vocab: int = 64, width: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mix = nn.Linear(width, width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(torch.tanh(self.mix(self.embed(ids))))


def token_inputs(vocab: int, length: int = 8) -> object:
    def make(_model: nn.Module, _tier: str, seed: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        return {"ids": torch.randint(0, vocab, (2, length), generator=generator)}

    return make


@zoo_entry("tied_weights", family="custom", kind="custom", inputs=token_inputs(64),
           notes="lm_head.weight is embed.weight: one initializer, two owners")
def tied_weights(tier: str) -> nn.Module:
    return TiedLM(vocab=64, width=WIDTH[tier])


class DictInOut(nn.Module):
    """Takes a dict of tensors and returns a tuple holding a dict."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.image = nn.Linear(width, width)
        self.text = nn.Linear(width, width)
        self.fuse = nn.Linear(2 * width, 4)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        image, text = self.image(batch["image"]), self.text(batch["text"])
        return self.fuse(torch.cat([image, text], dim=-1)), {"image": image, "text": text}


def dict_inputs(_model: nn.Module, tier: str, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"batch": {"image": torch.randn(2, WIDTH[tier], generator=generator),
                      "text": torch.randn(2, WIDTH[tier], generator=generator)}}


@zoo_entry("dict_io", family="custom", kind="custom", inputs=dict_inputs,
           notes="dict input, tuple output holding a dict")
def dict_io(tier: str) -> nn.Module:
    return DictInOut(width=WIDTH[tier])


class EarlyExit(nn.Module):
    """Runs a ModuleList until the activations grow past a threshold."""

    def __init__(self, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(width) for _ in range(depth)])
        self.head = nn.Linear(width, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
            if x.norm() > 50.0:
                break
        return self.head(x)


@zoo_entry("early_exit", family="custom", kind="custom", inputs=vector_inputs,
           notes="loop over a ModuleList with a data-dependent break")
def early_exit(tier: str) -> nn.Module:
    return EarlyExit(width=WIDTH[tier])
