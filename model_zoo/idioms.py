"""The ``idioms`` tier: the plain PyTorch shapes users write, one small model each.

Where the transformers zoo shows what libraries build, these show what a user
writes by hand: a root ``nn.Sequential``, torch's own ``nn.Transformer*``
and RNN layers, ``ModuleDict`` routing, loops with residual adds outside the
layers, reuse of one instance, one submodule under two parents, parameters
used directly in the root, BatchNorm that export folds into its Conv, tied
weights, ``torch.where`` gates, dict/tuple/nested outputs, integer and
boolean inputs.  Every one must export under AUTO with right tags.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model_zoo.registry import IDIOMS, zoo_entry

WIDTH = 16


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def vectors(_model: nn.Module, _tier: str, seed: int) -> torch.Tensor:
    return torch.randn(2, WIDTH, generator=_seeded(seed))


def sequences(_model: nn.Module, _tier: str, seed: int) -> torch.Tensor:
    return torch.randn(2, 6, WIDTH, generator=_seeded(seed))


def images(_model: nn.Module, _tier: str, seed: int) -> torch.Tensor:
    return torch.randn(1, 3, 16, 16, generator=_seeded(seed))


def idiom(name: str, inputs: Callable[[nn.Module, str, int], Any], notes: str,
          atol: float = 1e-4) -> Callable:
    """Register a builder in the idioms tier; each idiom is a family of its own."""
    return zoo_entry(name, family=name, kind="idiom", inputs=inputs, tiers=(IDIOMS,),
                     notes=notes, atol=atol, category="idioms")


@idiom("root_sequential", vectors, "the model itself is an nn.Sequential")
def root_sequential(_tier: str) -> nn.Module:
    return nn.Sequential(nn.Linear(WIDTH, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(),
                         nn.Linear(32, 4))


@idiom("nested_sequential", images, "Sequential of Sequential conv stages, then a head")
def nested_sequential(_tier: str) -> nn.Module:
    def stage(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(stage(3, 8), stage(8, 16), nn.Sequential(nn.Flatten(),
                                                                  nn.Linear(16 * 4 * 4, 10)))


@idiom("transformer_encoder", sequences, "torch's nn.TransformerEncoder (fast path off in eval)",
       atol=1e-3)
def transformer_encoder(_tier: str) -> nn.Module:
    layer = nn.TransformerEncoderLayer(WIDTH, nhead=2, dim_feedforward=32, batch_first=True,
                                       dropout=0.0)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


class DecoderOverMemory(nn.Module):
    """torch's nn.TransformerDecoder attending to a memory made by a linear encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.encode = nn.Linear(WIDTH, WIDTH)
        layer = nn.TransformerDecoderLayer(WIDTH, nhead=2, dim_feedforward=32, batch_first=True,
                                           dropout=0.0)
        self.decoder = nn.TransformerDecoder(layer, num_layers=2)

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return self.decoder(target, self.encode(source))


def target_and_source(_model: nn.Module, _tier: str, seed: int) -> tuple[torch.Tensor, ...]:
    generator = _seeded(seed)
    return (torch.randn(2, 5, WIDTH, generator=generator),
            torch.randn(2, 7, WIDTH, generator=generator))


@idiom("transformer_decoder", target_and_source, "nn.TransformerDecoder with cross-attention",
       atol=1e-3)
def transformer_decoder(_tier: str) -> nn.Module:
    return DecoderOverMemory()


class SelfAttention(nn.Module):
    """nn.MultiheadAttention used as self-attention, then a projection."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(WIDTH, num_heads=2, batch_first=True)
        self.project = nn.Linear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended, _weights = self.attention(x, x, x, need_weights=False)
        return self.project(attended)


@idiom("multihead_attention", sequences, "nn.MultiheadAttention as self-attention")
def multihead_attention(_tier: str) -> nn.Module:
    return SelfAttention()


class RecurrentTagger(nn.Module):
    """An RNN over a sequence, a linear head on every step."""

    def __init__(self, cell: type[nn.RNNBase], bidirectional: bool) -> None:
        super().__init__()
        self.rnn = cell(WIDTH, 24, num_layers=2, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(48 if bidirectional else 24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, _state = self.rnn(x)
        return self.head(steps)


@idiom("lstm", sequences, "two-layer nn.LSTM and a per-step head")
def lstm(_tier: str) -> nn.Module:
    return RecurrentTagger(nn.LSTM, bidirectional=False)


@idiom("gru", sequences, "two-layer bidirectional nn.GRU and a per-step head")
def gru(_tier: str) -> nn.Module:
    return RecurrentTagger(nn.GRU, bidirectional=True)


class Router(nn.Module):
    """Experts in a ModuleDict, chosen by a name fixed at construction, plus named heads."""

    def __init__(self, route: str = "wide") -> None:
        super().__init__()
        self.route = route
        self.experts = nn.ModuleDict({
            "narrow": nn.Linear(WIDTH, WIDTH),
            "wide": nn.Sequential(nn.Linear(WIDTH, 64), nn.GELU(), nn.Linear(64, WIDTH)),
        })
        self.heads = nn.ModuleDict({"score": nn.Linear(WIDTH, 1), "label": nn.Linear(WIDTH, 3)})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.experts[self.route](x)
        return tuple(head(x) for head in self.heads.values())


@idiom("moduledict_routing", vectors, "ModuleDict experts picked by name; ModuleDict heads")
def moduledict_routing(_tier: str) -> nn.Module:
    return Router()


class ResidualStack(nn.Module):
    """``for layer in self.layers: x = x + layer(x)``: the adds belong to the root."""

    def __init__(self, depth: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(WIDTH), nn.Linear(WIDTH, WIDTH), nn.GELU())
            for _ in range(depth))
        self.out = nn.Linear(WIDTH, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return self.out(x)


@idiom("modulelist_residual", vectors, "ModuleList loop, residual adds outside the layers")
def modulelist_residual(_tier: str) -> nn.Module:
    return ResidualStack()


class CalledTwice(nn.Module):
    """One Linear instance applied twice, with work between the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.step = nn.Linear(WIDTH, WIDTH)
        self.norm = nn.LayerNorm(WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(self.norm(torch.relu(self.step(x))))


@idiom("module_called_twice", vectors, "one module instance called twice")
def module_called_twice(_tier: str) -> nn.Module:
    return CalledTwice()


class Branch(nn.Module):
    def __init__(self, shared: nn.Module) -> None:
        super().__init__()
        self.shared = shared
        self.own = nn.Linear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.own(torch.tanh(self.shared(x)))


class TwoParents(nn.Module):
    """One submodule registered under two parents (``left.shared is right.shared``)."""

    def __init__(self) -> None:
        super().__init__()
        shared = nn.Linear(WIDTH, WIDTH)
        self.left, self.right = Branch(shared), Branch(shared)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.left(x) * self.right(-x)


@idiom("shared_submodule", vectors, "one submodule under two parents")
def shared_submodule(_tier: str) -> nn.Module:
    return TwoParents()


class FunctionalRoot(nn.Module):
    """Parameters held and used by the root itself, through torch.nn.functional only."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(32, WIDTH) * 0.1)
        self.bias = nn.Parameter(torch.zeros(32))
        self.scale = nn.Parameter(torch.ones(32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.gelu(F.linear(x, self.weight, self.bias))
        return F.layer_norm(hidden, (32,), self.scale) @ self.weight


@idiom("functional_root", vectors, "functional ops in the root on the root's own parameters")
def functional_root(_tier: str) -> nn.Module:
    return FunctionalRoot()


class ConvBatchNorm(nn.Module):
    """Conv followed by BatchNorm: export folds the BN into the Conv's weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


@idiom("folded_batchnorm", images, "BatchNorm folded into the Conv before it")
def folded_batchnorm(_tier: str) -> nn.Module:
    return ConvBatchNorm()


class TiedEmbedding(nn.Module):
    """An embedding and the output layer sharing one weight."""

    def __init__(self, vocab: int = 50) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, WIDTH)
        self.body = nn.Linear(WIDTH, WIDTH)
        self.unembed = nn.Linear(WIDTH, vocab, bias=False)
        self.unembed.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.unembed(torch.tanh(self.body(self.embed(ids))))


def token_ids(_model: nn.Module, _tier: str, seed: int) -> torch.Tensor:
    return torch.randint(0, 50, (2, 7), generator=_seeded(seed))


@idiom("tied_embedding", token_ids, "embedding and output layer share one weight")
def tied_embedding(_tier: str) -> nn.Module:
    return TiedEmbedding()


class WhereGate(nn.Module):
    """Both branches computed, an elementwise ``torch.where`` picks: no control flow."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Linear(WIDTH, WIDTH)
        self.on, self.off = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.gate(x) > 0, self.on(x), self.off(x))


@idiom("where_gating", vectors, "torch.where between two branches")
def where_gating(_tier: str) -> nn.Module:
    return WhereGate()


class DictOutput(nn.Module):
    """Returns a dict of named outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(WIDTH, WIDTH)
        self.logits = nn.Linear(WIDTH, 3)
        self.value = nn.Linear(WIDTH, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = torch.relu(self.trunk(x))
        return {"logits": self.logits(hidden), "value": self.value(hidden)}


@idiom("dict_output", vectors, "dict of outputs")
def dict_output(_tier: str) -> nn.Module:
    return DictOutput()


class NestedOutput(nn.Module):
    """Returns ``(out, (hidden, [first, second]))``."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, 4)

    def forward(self, x: torch.Tensor) -> tuple:
        first = self.first(x)
        second = self.second(torch.relu(first))
        return second.sum(-1), (first, [first * 2, second])


@idiom("nested_outputs", vectors, "tuple output holding a tuple and a list")
def nested_outputs(_tier: str) -> nn.Module:
    return NestedOutput()


class MaskedPooling(nn.Module):
    """Integer ids and a boolean padding mask in; a masked mean of embeddings out."""

    def __init__(self, vocab: int = 40) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, WIDTH)
        self.project = nn.Linear(WIDTH, WIDTH)

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        hidden = self.project(self.embed(ids))
        weights = keep.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def ids_and_mask(_model: nn.Module, _tier: str, seed: int) -> dict[str, torch.Tensor]:
    generator = _seeded(seed)
    ids = torch.randint(0, 40, (2, 9), generator=generator)
    keep = torch.rand(2, 9, generator=generator) > 0.3
    return {"ids": ids, "keep": keep}


@idiom("int_bool_inputs", ids_and_mask, "int64 ids and a bool mask as inputs")
def int_bool_inputs(_tier: str) -> nn.Module:
    return MaskedPooling()
