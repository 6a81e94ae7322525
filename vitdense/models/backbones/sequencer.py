"""Sequencer2D (Tatsunami & Taki, NeurIPS 2022, arXiv 2205.01972) as a dense-prediction backbone.

Trunk
-----
timm's ``Sequencer2d`` stem and stages (``stem.proj``, ``stages.i.downsample.down``,
``stages.i.blocks.j.{norm1, rnn_tokens.{rnn_v, rnn_h, fc}, norm2, mlp_channels}``), so timm state dicts load
as they are and the official okojoalg/sequencer layout through :meth:`Sequencer2D.adapt_checkpoint`. A block
is LN -> BiLSTM2D -> residual, LN -> MLP (ratio 3) -> residual; BiLSTM2D runs one bidirectional LSTM down
every column and one along every row (hidden C/4, weights shared by all columns / rows) and fuses the
concatenated outputs with a linear layer. timm's ``LSTM2d`` already does that batched, one bidirectional LSTM
call per axis for the whole batch (all B x W columns are one LSTM batch, all B x H rows another), so the
blocks are reused unchanged. (A time-major re-layout of the scans, tried to save timm's transposing copies,
measured 0.94-1.05x of timm's speed per BiLSTM2D on this CPU: oneDNN's LSTM takes strided input as cheaply,
so it was dropped.)

Pyramid adaptation
------------------
The ImageNet architecture has patch sizes 7/2/1/1: stage 0 sits at stride 7 (192 channels), stages 1-3
all at stride 14 (384 channels). FPN / UperNet want strides 4/8/16/32 (sizes ceil(H / s)). Choices:

* Re-striding the trunk (stem 4, then 2/2/2) would break the weights: the stem kernel, and above all the
  token scale the LSTMs learned their dynamics on, change; stride-4 tokens would also make stage 0 about
  3x costlier and its sequential LSTM scans 1.75x longer. Rejected.
* Shrinking the image by 7/8 so the trunk lands on strides 8/16 keeps the weights, but throws away 23 % of
  the pixels before the backbone sees them (small objects suffer). Rejected.
* Chosen: run the trunk as trained, at full resolution (the input zero-padded at the bottom/right to a
  multiple of 14), and resample its maps, ViTDet-style (simple feature pyramid, arXiv 2203.16527):

  - stride 8  <- stage 0 (stride 7), bilinear x 7/8 with cell centres aligned (see
    :func:`resample_to_stride`). Stage 0 is the only map finer than 14; the fine
    levels need its spatial detail, while semantics reach them through the FPN top-down path (and every
    BiLSTM2D token already sees its whole row and column).
  - stride 4  <- the stride-8 map through a learned 2x2 stride-2 transposed conv (ViTDet's 2x layer):
    a learned upsampling can decode the sub-token detail a token carries in its channels, which
    interpolation cannot; doing it after the 7 -> 8 resample keeps the ratio an exact 2, so the deconv's
    four kernel phases tile the stride-4 grid regularly instead of beating against a 1.75 ratio.
  - stride 16 <- stage 3 (stride 14, the deepest map; stages 1-2 share its resolution and feed it),
    bilinear x 14/16.
  - stride 32 <- the stride-16 map through a learned 2x2 stride-2 conv.

  Both resamples are mild (x 0.875, nothing is invented or aliased); the two learned layers are cheap
  (at 800 x 1216 about 2.2 + 0.6 GMACs, under 2 % of the trunk's 164 GMACs; in time the whole pyramid,
  norms and memory passes over the 192-channel stride-4 map included, measured +7-10 % over the trunk on
  one CPU thread) and start as nearest-neighbour upsampling and 2x2 average pooling, so fine-tuning begins
  from the ImageNet features, not from a random projection of them. Every level then gets a LayerNorm
  (``out_norms``). Output channels: 192, 192, 384, 384. The resampling layers and output norms are new: a
  checkpoint load reports them as missing. Grid cells past the (padded) trunk map take its edge value.

Classification (``pyramid=False``, the ImageNet classifier config): no pyramid; output i is trunk stage i's
map as timm computes it (``strides`` 7/14/14/14, channels 192/384/384/384; the input zero-padded to a multiple
of 14 as for the pyramid, which at 224 pads nothing), through its output norm, so pooling the last one is
timm's classifier's pooled feature. The
pyramid's resampled stride-16 level would pool a different average (the 16 x 16 map at 224 resampled to
14 x 14).

``frozen_stages`` freezes the stem and trunk stages 1..k only; the pyramid layers and output norms always
train (they are not pretrained, and a frozen fresh layer would fix its init forever).

torch.compile
-------------
dynamo breaks the graph at every ``nn.LSTM`` unless ``torch._dynamo.config.allow_rnn`` is set. Building a
Sequencer2D leaves that setting alone; to compile it as one graph, trace it with the setting on::

    compiled = torch.compile(model)
    with torch._dynamo.config.patch(allow_rnn=True):
        compiled(x)   # dynamo traces (and retraces for a new input size) inside the context
"""
from functools import partial
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from timm.layers import DropPath, LayerNorm2d
from timm.models.sequencer import Sequencer2d as TimmSequencer2d
from timm.models.sequencer import checkpoint_filter_fn as sequencer_checkpoint_filter

from vitdense.checkpoint.adaptation import CheckpointAdaptation
from vitdense.errors import ConfigError
from vitdense.registry import MODELS
from ..cpu_layers import use_fast_cpu_layers
from ..layers import pad_to_multiple, resample_to_stride
from .base import DenseBackbone, stochastic_depth


@MODELS.register_module()
class Sequencer2D(DenseBackbone):
    """Sequencer2D-S/M/L pyramid backbone (strides 4/8/16/32 from a stride-7/14 ImageNet trunk).

    Args:
        arch: 's' | 'm' | 'l' (or 'small' | 'medium' | 'large'), or dict(layers=, embed_dims=, hidden_sizes=)
            for other widths/depths (patch sizes stay 7/2/1/1).
        drop_path_rate: stochastic depth, linear over all blocks.
        pyramid: True (default): levels at strides 4/8/16/32 resampled from the trunk (dense prediction);
            False: the trunk's own stage maps (classification, timm's computation), see the module docstring.
        out_indices / frozen_stages / with_cp / init_cfg: see :class:`DenseBackbone` and the module docstring.
    """
    arch_settings = {
        's': dict(layers=(4, 3, 8, 3)),
        'm': dict(layers=(4, 3, 14, 3)),
        'l': dict(layers=(8, 8, 16, 4)),
    }
    arch_aliases = {'small': 's', 'medium': 'm', 'large': 'l'}
    default_dims = dict(embed_dims=(192, 384, 384, 384), hidden_sizes=(48, 96, 96, 96))
    patch_sizes = (7, 2, 1, 1)
    trunk_strides = (7, 14, 14, 14)

    def __init__(self, arch='s', in_channels: int = 3, mlp_ratio: float = 3.0, drop_path_rate: float = 0.1,
                 pyramid: bool = True, out_indices=(0, 1, 2, 3), frozen_stages: int = -1, with_cp: bool = False,
                 init_cfg=None):
        super().__init__(out_indices, frozen_stages, in_channels, init_cfg)
        if not isinstance(pyramid, bool):
            raise ConfigError(f'Sequencer2D: pyramid must be True (strides 4/8/16/32, dense prediction) or False '
                              f'(the trunk\'s stage maps, classification), got {pyramid!r}')
        self.pyramid = pyramid
        if not pyramid:
            self.strides = self.trunk_strides
        settings = {**self.default_dims, **self.resolve_arch(arch)}
        self.depths = tuple(settings['layers'])
        embed_dims, hidden_sizes = tuple(settings['embed_dims']), tuple(settings['hidden_sizes'])
        if not len(self.depths) == len(embed_dims) == len(hidden_sizes) == self.num_stages:
            raise ConfigError(f'Sequencer2D arch needs 4 layers / embed_dims / hidden_sizes, got {settings}')
        trunk = TimmSequencer2d(num_classes=0, in_chans=in_channels, layers=self.depths,
                                patch_sizes=self.patch_sizes, embed_dims=embed_dims, hidden_sizes=hidden_sizes,
                                mlp_ratios=(mlp_ratio,) * self.num_stages)
        self.stem, self.stages = trunk.stem, trunk.stages
        # timm gives every block the same rate; the contract is linear over blocks
        for stage, rates in zip(self.stages, stochastic_depth(drop_path_rate, self.depths)):
            for block, rate in zip(stage.blocks, rates):
                block.drop_path = DropPath(rate) if rate > 0 else nn.Identity()

        fine, coarse = embed_dims[0], embed_dims[-1]
        self.num_features = [fine, fine, coarse, coarse] if pyramid else list(embed_dims)
        self.to_stride4 = nn.ConvTranspose2d(fine, fine, 2, stride=2) if pyramid and 0 in self.out_indices else None
        self.to_stride32 = nn.Conv2d(coarse, coarse, 2, stride=2) if pyramid and 3 in self.out_indices else None
        self.out_norms = self.build_out_norms(partial(LayerNorm2d, eps=1e-6), self.num_features)
        self._init_pyramid()
        self.with_cp = with_cp
        use_fast_cpu_layers(self)
        self._freeze()

    def resolve_arch(self, arch):
        if isinstance(arch, dict):
            unknown = set(arch) - {'layers', 'embed_dims', 'hidden_sizes'}
            if 'layers' not in arch or unknown:
                raise ConfigError(f'a Sequencer2D arch dict needs layers= (and may set embed_dims=, hidden_sizes=), '
                                  f'got keys {sorted(arch)}')
            return dict(arch)
        key = self.arch_aliases.get(arch, arch)
        if key not in self.arch_settings:
            raise ConfigError(f"unknown Sequencer2D arch '{arch}'; choose one of 's', 'm', 'l' "
                              "('small', 'medium', 'large') or pass a dict(layers=, embed_dims=, hidden_sizes=)")
        return self.arch_settings[key]

    @torch.no_grad()
    def _init_pyramid(self):
        """Nearest-neighbour 2x upsampling and 2x2 average pooling: the pyramid starts as the trunk's maps."""
        if self.to_stride4 is not None:
            C = self.to_stride4.in_channels
            self.to_stride4.weight.copy_(torch.eye(C)[:, :, None, None].expand(C, C, 2, 2))
            self.to_stride4.bias.zero_()
        if self.to_stride32 is not None:
            C = self.to_stride32.in_channels
            self.to_stride32.weight.copy_(torch.eye(C)[:, :, None, None].expand(C, C, 2, 2) / 4)
            self.to_stride32.bias.zero_()

    # ---- trunk ---------------------------------------------------------------------------------------
    def forward_trunk(self, x: torch.Tensor, num_stages: int = 4) -> List[torch.Tensor]:
        """The ImageNet trunk as trained: NHWC maps of stages 0..num_stages-1 at strides 7/14/14/14.

        No padding here (the stem floors like timm's); :meth:`forward` pads the image to a multiple of 14.
        """
        x = self.stem(x)
        maps = []
        for stage in self.stages[:num_stages]:
            x = stage.downsample(x)
            if self.with_cp and stage.training and torch.is_grad_enabled():  # frozen stages stay in eval
                for block in stage.blocks:
                    x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = stage.blocks(x)
            maps.append(x)
        return maps

    # ---- pyramid -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        if not self.pyramid:
            maps = self.forward_trunk(pad_to_multiple(x, self.trunk_strides[-1]),
                                      num_stages=max(self.out_indices) + 1)
            return tuple(self.out_norms[i](maps[i].permute(0, 3, 1, 2)).contiguous() for i in self.out_indices)
        H, W = x.shape[-2:]
        wanted = set(self.out_indices)
        size = {s: (-(-H // s), -(-W // s)) for s in self.strides}
        maps = self.forward_trunk(pad_to_multiple(x, self.trunk_strides[-1]),
                                  num_stages=4 if wanted & {2, 3} else 1)
        levels = {}
        if wanted & {0, 1}:
            s8 = resample_to_stride(maps[0].permute(0, 3, 1, 2), self.trunk_strides[0], 8, size[8])
            levels[1] = s8
            if 0 in wanted:
                levels[0] = self.to_stride4(s8)[..., :size[4][0], :size[4][1]]
        if wanted & {2, 3}:
            # with level 3 the stride-16 grid is made even so the 2x2 stride-2 conv yields ceil(H / 32)
            grid = tuple(2 * n for n in size[32]) if 3 in wanted else size[16]
            s16 = resample_to_stride(maps[-1].permute(0, 3, 1, 2), self.trunk_strides[-1], 16, grid)
            levels[2] = s16[..., :size[16][0], :size[16][1]]
            if 3 in wanted:
                levels[3] = self.to_stride32(s16)
        return tuple(self.out_norms[i](levels[i]).contiguous() for i in self.out_indices)

    # ---- contract ------------------------------------------------------------------------------------
    def frozen_modules(self) -> List[nn.Module]:
        return [self.stem] + list(self.stages[:self.frozen_stages])

    def param_depth(self, param_name: str, mode: str) -> Tuple[int, int]:
        """Per block (layer_wise) or per stage (stage_wise), see :meth:`DenseBackbone.stage_layer_depth`; a
        stage's downsample conv goes with its first block, the pyramid layers and output norms last."""
        return self.stage_layer_depth(param_name, mode, 'stem', 'stages')

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """timm's names load as they are. The official okojoalg/sequencer release nests blocks as
        ``blocks.<stage>.<block>`` with each stage's downsampling conv as its last entry: timm's own
        ``checkpoint_filter_fn`` moves them to ``stages.<stage>.blocks.<block>`` / ``stages.<stage + 1>.downsample``.
        A timm ``features_only`` model names its stages ``stages_<i>``. The classifier (``head.``) and the final
        norm (``norm.``) are dropped."""
        adaptation = super().adapt_checkpoint(state_dict)
        keys = adaptation.state_dict
        if any(k.startswith('blocks.') for k in keys) and not any(k.startswith('stages.') for k in keys):
            adaptation.apply(lambda sd: sequencer_checkpoint_filter(sd, self),
                             note='official okojoalg/sequencer layout remapped (blocks.i.j -> stages.i.blocks.j)')
        elif any(k.startswith('stages_') for k in keys):
            adaptation.rename([(r'^stages_(\d+)\.', r'stages.\1.')],
                              note='timm features_only layout remapped (stages_i -> stages.i)')
        adaptation.drop_prefix(('head.', 'norm.'), 'classifier head and its final norm')
        return adaptation
