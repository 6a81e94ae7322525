"""Any timm plain ViT as a pyramid backbone: DINOv2 (patch 14, registers), DeiT III (layer scale), EVA-02 (RoPE,
SwiGLU), SAM / ViTDet (windows, relative positions), ... through ViTDet's simple feature pyramid.

``TimmViT(model_name=...)`` builds ``timm.create_model(model_name)`` of timm's ``vision_transformer``, ``eva`` or
``vision_transformer_sam`` family (``deit`` too: DeiT / DeiT III are timm ``VisionTransformer``s; classifier removed) and runs timm's own modules: its patch embedding, its
position embedding (resampled to the input grid by timm's ``_pos_embed`` / ``resample_abs_pos_embed_nhwc``),
its prefix tokens (class, registers), its RoPE (``rope.get_embed(shape)``) and its blocks, never copies of them.
The timm model is the ``vit`` submodule, so parameters are timm's names under ``vit.``.

What dense prediction adds (vitdense's choices where the papers leave room):

* any input H x W >= 32: the image is zero-padded (bottom / right) to a multiple of the patch, so the token grid
  is ceil(H / p) x ceil(W / p) (patch 14 included: padded, never resized), and the position embedding or the
  RoPE is computed for that grid; timm's ``img_size`` grid gives timm's own tokens exactly.
* the pyramid: the last token map goes through :class:`~vitdense.models.necks.SimpleFeaturePyramid` with scale
  factors from the real patch stride (``input_stride=p``, ``out_strides=(4, 8, 16, 32)``): for patch 16
  ViTDet's x4 / x2 / identity / max-pool, for patch 14 the same operations followed by an exact resampling
  from stride 3.5 / 7 / 14 / 28 to 4 / 8 / 16 / 32; each level cropped to ceil(H / s) and given a LayerNorm.
* windowed attention (ViTDet): ``window_size`` > 0 runs every block not in ``global_attn_indexes`` on
  non-overlapping windows of the token grid (zero-padded to whole windows; padded keys are masked out, so a
  window's output never depends on the padding). A whole timm block runs on each window's tokens (its norms,
  MLP and layer scales are per token, so only the attention becomes local). Prefix tokens (class, registers):
  every window attends to them as in pretraining (they are prepended to each window), and their outputs are
  averaged over the windows; a window covering the whole grid therefore equals global attention exactly.
  RoPE models (EVA-02) get the RoPE of the window grid in windowed blocks and of the whole grid in global ones,
  both at timm's reference scale (EVA-02's detection recipe). samvit models window inside timm's own blocks
  (their ``window_size`` / ``global_attn_indexes``, SAM's relative-position tables resampled by timm), so
  ``window_size=None`` keeps the model's own layout there and means global attention elsewhere.
* ``frozen_stages`` k: the stem (patch embedding, prefix tokens, position embedding, pre-norm) for 0, plus
  blocks 0..k-1 for k >= 1 (as mmpretrain's ViT; up to the depth, which also freezes the final norm). The
  pyramid and the output norms are never frozen: they start fresh.
* ``get_layer_depth``: layer_wise: stem 0, block i i + 1, everything after the blocks depth + 1
  (``num_depths = depth + 2``, ViTDet / BEiT); stage_wise: the blocks in 4 equal groups, stem 0, the rest 5.
* ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` loads timm state dicts of the model (and the layouts
  timm's own filters read: the official DINOv2 / EVA / SAM releases) through :meth:`adapt_checkpoint`.

API for modules built on the backbone (e.g. a ViT-Adapter), all in timm's token layout:

* ``embed_dim``, ``patch_size`` (the token stride p), ``num_blocks``, ``num_prefix_tokens``.
* :meth:`embed_tokens` (images -> :class:`TokenMap`: patch tokens (B, h * w, C), prefix tokens (B, P, C),
  grid (h, w)), :meth:`run_blocks` (blocks ``start`` .. ``end - 1`` on a TokenMap, windows / RoPE / with_cp
  handled), :meth:`apply_final_norm` (timm's final norm; identity unless ``final_norm=True``) and
  :meth:`token_map` (the (B, C, h, w) map the pyramid reads).
"""
import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from timm.layers import LayerNorm2d

from vitdense.checkpoint.adaptation import CheckpointAdaptation
from vitdense.errors import CheckpointError, ConfigError
from vitdense.registry import MODELS
from ..cpu_layers import use_fast_cpu_layers
from ..layers import pad_to_multiple, window_padding_mask, window_partition, window_reverse
from ..necks.simple_pyramid import SimpleFeaturePyramid
from .base import DenseBackbone

# timm module -> family; the families share the plain-ViT layout (patch embedding, prefix tokens, blocks)
TIMM_FAMILIES = {'timm.models.vision_transformer': 'vit', 'timm.models.deit': 'vit', 'timm.models.eva': 'eva',
                 'timm.models.vision_transformer_sam': 'sam'}
STEM_NAMES = ('patch_embed', 'cls_token', 'reg_token', 'pos_embed', 'norm_pre', 'rope')
OWN_PREFIXES = ('vit.', 'pyramid.', 'out_norms.')  # a vitdense checkpoint of this backbone
# keys only layouts other than timm's have: the official DINOv2 / EVA / MIM releases (mask token), the official
# SAM release, OpenCLIP towers, original DeiT III layer scales; timm's own filter of the family maps them
FOREIGN_MARKERS = ('mask_token', 'image_encoder.patch_embed.proj.weight', 'visual.trunk.pos_embed', 'visual.pos_embed',
                   'blocks.0.gamma_1', 'blocks.0.mlp.w12.weight')


class TokenMap(NamedTuple):
    """Tokens of a ViT on an h x w grid: ``patches`` (B, h * w, C) in raster order, ``prefix`` (B, P, C) the
    class / register tokens (P may be 0), ``grid`` (h, w)."""
    patches: torch.Tensor
    prefix: torch.Tensor
    grid: Tuple[int, int]


def timm_vit_family(model_name: str) -> str:
    """'vit', 'eva' or 'sam' for a timm model name; one line naming the families (and close names) otherwise."""
    import difflib

    import timm
    if not timm.is_model(model_name):
        known = [n for module in TIMM_FAMILIES for n in timm.list_models(module=module.rsplit('.', 1)[1])]
        close = difflib.get_close_matches(model_name, known, n=3)
        raise ConfigError(f"'{model_name}' is not a timm model" + (f"; did you mean {', '.join(close)}?" if close
                                                                 else "; see timm.list_models('vit_*')"))
    module = timm.models.model_entrypoint(model_name).__module__
    if module not in TIMM_FAMILIES:
        raise ConfigError(f"TimmViT takes timm's plain ViTs (modules {', '.join(sorted(TIMM_FAMILIES))}); "
                          f"'{model_name}' is a {module} model: use vitdense.TimmBackbone for it")
    return TIMM_FAMILIES[module]


@MODELS.register_module()
class TimmViT(DenseBackbone):
    """A timm plain ViT (by name) with ViTDet's simple feature pyramid; see the module docstring.

    Args:
        model_name: a timm model of the ``vision_transformer`` / ``eva`` / ``vision_transformer_sam`` modules,
            e.g. 'vit_small_patch14_dinov2', 'vit_base_patch14_reg4_dinov2', 'deit3_small_patch16_224',
            'eva02_small_patch14_224', 'samvit_base_patch16'.
        img_size: the image size the position embedding (and SAM's global relative-position tables) is stored
            for; default timm's (the pretraining size, e.g. 518 for DINOv2). Checkpoints of another grid are
            resampled at load, inputs of any size at run time.
        window_size: None: the model's own attention (global; samvit: its windows); 0: global everywhere; > 0:
            windows of that many tokens in every block not in ``global_attn_indexes``.
        global_attn_indexes: blocks that keep global attention when ``window_size`` > 0.
        final_norm: apply timm's final norm to the last tokens before the pyramid (DINOv2's normalised
            features); False (ViTDet) leaves it out of the model.
        drop_path_rate: stochastic depth, timm's rule (linear over blocks).
        model_kwargs: further ``timm.create_model`` arguments (e.g. ``depth=2, embed_dim=64`` for a narrow model).
        out_indices / frozen_stages / with_cp / in_channels / init_cfg: see the module docstring and
            :class:`~vitdense.models.backbones.base.DenseBackbone`.
    """

    def __init__(self, model_name: str, img_size=None, window_size: Optional[int] = None,
                 global_attn_indexes: Sequence[int] = (), final_norm: bool = False, drop_path_rate: float = 0.1,
                 out_indices=(0, 1, 2, 3), frozen_stages: int = -1, with_cp: bool = False, in_channels: int = 3,
                 model_kwargs: Optional[dict] = None, init_cfg=None):
        super().__init__(out_indices, -1, in_channels, init_cfg)
        import timm
        self.model_name = model_name
        self.family = timm_vit_family(model_name)
        if window_size is not None and window_size < 0:
            raise ConfigError(f'window_size={window_size} must be None (the model\'s own attention), 0 (global) '
                              'or a positive number of tokens')
        kwargs = dict(pretrained=False, num_classes=0, global_pool='', in_chans=in_channels,
                      drop_path_rate=drop_path_rate)
        if img_size is not None:
            kwargs['img_size'] = img_size
        if self.family == 'sam':
            kwargs['neck_chans'] = 0
            if window_size is not None:
                kwargs.update(window_size=window_size, global_attn_indexes=tuple(global_attn_indexes))
        else:
            kwargs['dynamic_img_size'] = True  # position embedding / RoPE for the input's grid
        kwargs.update(model_kwargs or {})
        try:
            self.vit = timm.create_model(model_name, **kwargs)
        except TypeError as e:  # an argument the model does not take
            raise ConfigError(f"timm's {model_name} refused its arguments: {e}") from None
        vit = self.vit

        self.embed_dim = vit.embed_dim
        self.num_blocks = len(vit.blocks)
        patch = tuple(vit.patch_embed.patch_size)
        if patch[0] != patch[1]:
            raise ConfigError(f'{model_name} has a non-square patch {patch}; the pyramid needs one token stride')
        self.patch_size = patch[0]
        self.num_prefix_tokens = 0 if self.family == 'sam' else vit.num_prefix_tokens
        if getattr(vit, 'patch_drop', None) is not None and not isinstance(vit.patch_drop, nn.Identity):
            raise ConfigError('patch dropout removes tokens from the grid a dense backbone needs; set '
                              'patch_drop_rate=0')
        if self.family == 'eva' and getattr(vit, 'rope', None) is not None and not hasattr(vit.rope, 'get_embed'):
            raise ConfigError(f"{model_name}'s RoPE cannot be computed for another grid")

        # the blocks this wrapper windows (samvit windows inside its own blocks)
        global_attn_indexes = tuple(global_attn_indexes)
        bad = [i for i in global_attn_indexes if not 0 <= i < self.num_blocks]
        if bad:
            raise ConfigError(f'global_attn_indexes {global_attn_indexes} must index blocks 0..{self.num_blocks - 1}')
        windowed = self.family != 'sam' and bool(window_size)
        self.block_windows = [window_size if windowed and i not in global_attn_indexes else 0
                              for i in range(self.num_blocks)]
        self.window_size = window_size
        self.global_attn_indexes = global_attn_indexes

        # what the classifier alone used goes: its final norm unless asked for, samvit's neck, the head
        self.final_norm = final_norm
        if self.family == 'sam':
            if final_norm:
                raise ConfigError("samvit models have no final token norm (SAM's neck convolutions feed its mask "
                                  'decoder); use final_norm=False')
            vit.neck = nn.Identity()
        elif not final_norm:
            vit.norm = nn.Identity()
        self.with_cp = with_cp

        self.pyramid = SimpleFeaturePyramid(self.embed_dim, input_stride=self.patch_size, out_strides=self.strides,
                                            out_indices=self.out_indices)
        self.num_features = list(self.pyramid.channels)
        self.out_norms = self.build_out_norms(LayerNorm2d, self.num_features)
        # block i belongs to stage i * 4 // depth (stage-wise lr decay)
        self.block_stage = [i * self.num_stages // self.num_blocks for i in range(self.num_blocks)]

        if not -1 <= frozen_stages <= self.num_blocks:
            raise ConfigError(f'frozen_stages={frozen_stages} must lie in -1..{self.num_blocks} (the stem, then '
                              'that many blocks)')
        self.frozen_stages = frozen_stages
        use_fast_cpu_layers(self)
        self._freeze()

    # ---- the token API --------------------------------------------------------------------------------
    def embed_tokens(self, images: torch.Tensor) -> TokenMap:
        """Images (B, 3, H, W) -> :class:`TokenMap` on the ceil(H / p) x ceil(W / p) grid: the image zero-padded
        to whole patches, timm's patch embedding, position embedding resampled to the grid, prefix tokens,
        pre-norm."""
        vit = self.vit
        p = self.patch_size
        x = vit.patch_embed(pad_to_multiple(images, p))  # B, h, w, C
        B, h, w, C = x.shape
        if self.family == 'sam':
            from timm.layers import resample_abs_pos_embed_nhwc
            if vit.pos_embed is not None:
                x = x + resample_abs_pos_embed_nhwc(vit.pos_embed, [h, w])
            x = vit.norm_pre(vit.pos_drop(x)).reshape(B, h * w, C)
            return TokenMap(x, x.new_zeros(B, 0, C), (h, w))
        x = vit._pos_embed(x)
        if self.family == 'eva':
            x = x[0]  # (tokens, rope for the grid): the RoPE is taken per block in run_blocks
        elif vit.patch_drop is not None:
            x = vit.patch_drop(x)
        x = vit.norm_pre(x)
        P = self.num_prefix_tokens
        return TokenMap(x[:, P:], x[:, :P], (h, w))

    def run_blocks(self, tokens: TokenMap, start: int = 0, end: Optional[int] = None) -> TokenMap:
        """Blocks ``start`` .. ``end - 1`` (default: to the last) on ``tokens``: windowed or global as configured,
        RoPE of the grid / window, activation checkpointing with ``with_cp``."""
        end = self.num_blocks if end is None else end
        patches, prefix, (h, w) = tokens
        B, N, C = patches.shape
        blocks = self.vit.blocks
        if self.family == 'sam':
            x = patches.reshape(B, h, w, C)
            for i in range(start, end):
                x = self._call(blocks[i], x)
            return TokenMap(x.reshape(B, N, C), prefix, (h, w))
        x = torch.cat([prefix, patches], dim=1)
        ropes = {}
        for i in range(start, end):
            ws = self.block_windows[i]
            extent = (ws, ws) if ws else (h, w)
            if extent not in ropes:
                ropes[extent] = self._rope(extent)
            rope = ropes[extent]
            if rope is not None and getattr(self.vit, 'rope_mixed', False):
                rope = rope[i]
            if ws:
                x = self._windowed_block(blocks[i], x, (h, w), ws, rope)
            else:
                x = self._call(blocks[i], x, rope=rope)
        P = self.num_prefix_tokens
        return TokenMap(x[:, P:], x[:, :P], (h, w))

    def apply_final_norm(self, tokens: TokenMap) -> TokenMap:
        """timm's final norm on every token (identity unless ``final_norm=True``)."""
        norm = self.vit.norm if self.family != 'sam' else nn.Identity()
        return TokenMap(norm(tokens.patches), norm(tokens.prefix), tokens.grid)

    def token_map(self, images: torch.Tensor) -> torch.Tensor:
        """The (B, C, ceil(H / p), ceil(W / p)) patch-token map after the blocks (and the final norm if set): what
        the pyramid reads, and timm's ``forward_intermediates`` last map at timm's image size."""
        tokens = self.apply_final_norm(self.run_blocks(self.embed_tokens(images)))
        B, N, C = tokens.patches.shape
        return tokens.patches.transpose(1, 2).reshape(B, C, *tokens.grid)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        maps = self.pyramid(self.token_map(x), image_size=tuple(x.shape[-2:]))
        return tuple(self.out_norms[i](m) for i, m in zip(self.out_indices, maps))

    # ---- blocks ---------------------------------------------------------------------------------------
    def _call(self, block: nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """``block(x, **kwargs)`` (the eva blocks take ``rope=``, the others no RoPE argument), checkpointed with
        ``with_cp`` while gradients flow."""
        if self.family == 'eva':
            kwargs.setdefault('rope', None)
        else:
            kwargs.pop('rope', None)
        if kwargs.get('attn_mask', 0) is None:
            kwargs.pop('attn_mask')
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(block, x, use_reentrant=False, **kwargs)
        return block(x, **kwargs)

    def _rope(self, extent: Tuple[int, int]) -> Optional[torch.Tensor]:
        rope = getattr(self.vit, 'rope', None) if self.family == 'eva' else None
        return None if rope is None else rope.get_embed(shape=list(extent))

    def _windowed_block(self, block: nn.Module, x: torch.Tensor, grid: Tuple[int, int], ws: int,
                        rope: Optional[torch.Tensor]) -> torch.Tensor:
        """One block on ws x ws windows of the grid: (B, P + h * w, C) -> same. Each window's sequence is the P
        prefix tokens then its ws * ws tokens; padded keys are masked; prefix outputs are averaged over windows."""
        P = self.num_prefix_tokens
        h, w = grid
        B, _, C = x.shape
        window = (ws, ws)
        patches = pad_to_multiple(x[:, P:].reshape(B, h, w, C), window, channels_last=True)
        hp, wp = patches.shape[1:3]
        windows = window_partition(patches, window).reshape(-1, ws * ws, C)  # (B * nW, ws * ws, C), batch-major
        nW = windows.shape[0] // B
        if P:
            prefix = x[:, :P, None].expand(B, P, nW, C).permute(0, 2, 1, 3).reshape(B * nW, P, C)
            windows = torch.cat([prefix, windows], dim=1)
        mask = None
        if hp != h or wp != w:
            valid = window_padding_mask(h, w, window, device=x.device)  # nW, ws * ws
            valid = torch.cat([valid.new_ones(nW, P), valid], dim=1)
            mask = torch.zeros(valid.shape, dtype=x.dtype, device=x.device).masked_fill(~valid, float('-inf'))
            mask = mask[None].expand(B, nW, P + ws * ws).reshape(B * nW, 1, 1, P + ws * ws)
        out = self._call(block, windows, rope=rope, attn_mask=mask)
        patches = window_reverse(out[:, P:].reshape(-1, ws * ws, C), window, hp, wp)[:, :h, :w].reshape(B, h * w, C)
        if not P:
            return patches
        prefix = out[:, :P].reshape(B, nW, P, C).mean(dim=1)
        return torch.cat([prefix, patches], dim=1)

    # ---- checkpoints ----------------------------------------------------------------------------------
    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """timm state dicts of the model (or of the same model at another image size / patch size), the layouts
        timm's filter of the family reads (official DINOv2 with registers, EVA, SAM releases; OpenCLIP towers)
        and vitdense checkpoints of this backbone: the classifier, the unused final norm, SAM's neck, the MIM mask
        token and RoPE tables (recomputed for every grid) are dropped; ``pos_embed`` is resampled (bicubic) to the
        ``img_size`` grid, SAM's relative-position tables (linear, as SAM resamples them) to the model's extents and
        the patch embedding to the model's patch; timm names go under ``vit.``. Register tokens and layer scales
        load by name; a checkpoint with another number of register tokens is refused in one line."""
        a = super().adapt_checkpoint(state_dict)
        sd = a.state_dict
        if any(k.startswith(OWN_PREFIXES) for k in sd):
            a.rename_keys(lambda k: k[4:] if k.startswith('vit.') else k)
        elif any(k in sd for k in FOREIGN_MARKERS):
            import sys
            filter_fn = sys.modules[type(self.vit).__module__].checkpoint_filter_fn
            kwargs = dict(adapt_layer_scale=True) if 'blocks.0.gamma_1' in sd and self.family == 'vit' else {}
            a.apply(lambda d: filter_fn(d, self.vit, **kwargs),
                    note=f"not a timm layout: mapped by timm's {type(self.vit).__module__}.checkpoint_filter_fn")
        own = {k[4:]: v for k, v in self.state_dict().items() if k.startswith('vit.')}
        sd = a.state_dict

        a.drop_prefix(('head.', 'head_drop.', 'fc_norm.', 'attn_pool.', 'pre_logits.'), 'classifier only')
        if self.family == 'sam':
            a.drop_prefix('neck.', "SAM's neck feeds its mask decoder, not the pyramid")
        elif not self.final_norm:
            a.drop_prefix('norm.', 'final norm: not used with final_norm=False (ViTDet reads the last block)')
        a.drop([k for k in sd if k == 'mask_token' or k.endswith('.mask_token')], 'masked-image-modelling token, '
               'pretraining only')
        a.drop([k for k in sd if 'rope' in k.split('.') and k not in own],
               'RoPE tables: recomputed for every input grid')

        want = own['reg_token'].shape[1] if 'reg_token' in own else 0
        have = sd['reg_token'].shape[1] if 'reg_token' in sd else 0
        if have != want:
            raise CheckpointError(f'the checkpoint has {have} register tokens and {self.model_name} {want}; build '
                                  f'the variant it was made for (e.g. vit_base_patch14_reg{have}_dinov2)'
                                  if have else f'the checkpoint has no register tokens and {self.model_name} '
                                  f'{want}; build the variant without registers')
        a.rename_keys(lambda k: k if k.startswith(('pyramid.', 'out_norms.')) else 'vit.' + k)
        own = self.state_dict()
        self._fit_patch_embed(a, own)
        self._fit_pos_embed(a, own)
        self._fit_rel_pos(a, own)
        return a

    def _fit_patch_embed(self, a: CheckpointAdaptation, own: Dict[str, torch.Tensor]) -> None:
        key = 'vit.patch_embed.proj.weight'
        if key in a.state_dict and key in own and a.state_dict[key].shape[-2:] != own[key].shape[-2:]:
            from timm.layers import resample_patch_embed
            old = tuple(a.state_dict[key].shape[-2:])
            a.resize(key, resample_patch_embed(a.state_dict[key].float(), list(own[key].shape[-2:]))
                     .to(a.state_dict[key].dtype))
            a.note(f'patch embedding resampled from patch {old[0]} to {self.patch_size} (FlexiViT\'s rule, timm)')

    def _fit_pos_embed(self, a: CheckpointAdaptation, own: Dict[str, torch.Tensor]) -> None:
        pos = a.state_dict.get('vit.pos_embed')
        if pos is None or 'vit.pos_embed' not in own or pos.shape == own['vit.pos_embed'].shape:
            return
        from timm.layers import resample_abs_pos_embed, resample_abs_pos_embed_nhwc
        target = own['vit.pos_embed']
        if self.family == 'sam':  # (1, H, W, C)
            if pos.dim() != 4:
                raise CheckpointError(f'pos_embed has shape {tuple(pos.shape)}; samvit stores (1, H, W, C)')
            old, grid = tuple(pos.shape[1:3]), tuple(target.shape[1:3])
            new = resample_abs_pos_embed_nhwc(pos.float(), list(grid))
        else:  # (1, [prefix +] h * w, C): the prefix positions (if the model has them) are kept as they are
            prefix = 0 if getattr(self.vit, 'no_embed_class', False) else self.num_prefix_tokens
            patches = pos.shape[1] - prefix
            side = math.isqrt(max(patches, 0))
            if pos.dim() != 3 or side * side != patches:
                raise CheckpointError(f'pos_embed has shape {tuple(pos.shape)}: not {prefix} prefix positions and a '
                                      f'square grid, as {self.model_name} stores them; is it a checkpoint of '
                                      'this model?')
            grid = tuple(self.vit.patch_embed.grid_size)
            old = (side, side)
            new = resample_abs_pos_embed(pos.float(), new_size=list(grid), old_size=list(old),
                                         num_prefix_tokens=prefix)
        a.resize('vit.pos_embed', new.to(pos.dtype))
        a.note(f'pos_embed resampled (bicubic) from {old[0]}x{old[1]} to the img_size grid {grid[0]}x{grid[1]}')

    def _fit_rel_pos(self, a: CheckpointAdaptation, own: Dict[str, torch.Tensor]) -> None:
        moved = []
        for key in [k for k in a.state_dict if k.endswith(('attn.rel_pos_h', 'attn.rel_pos_w'))]:
            table = a.state_dict[key]
            if key in own and table.shape[0] != own[key].shape[0]:
                length = own[key].shape[0]
                resized = F.interpolate(table.float().t()[None], size=length, mode='linear')[0].t()
                a.resize(key, resized.to(table.dtype).contiguous())
                moved.append(key)
        if moved:
            a.note(f'{len(moved)} relative-position tables resampled (linear, SAM\'s rule) to the model\'s extents')

    # ---- freezing -------------------------------------------------------------------------------------
    def frozen_modules(self) -> List[nn.Module]:
        vit = self.vit
        mods = [m for m in (vit.patch_embed, vit.norm_pre, getattr(vit, 'rope', None)) if isinstance(m, nn.Module)]
        mods += list(vit.blocks[:self.frozen_stages])
        if self.frozen_stages == self.num_blocks and self.family != 'sam':
            mods.append(vit.norm)
        return mods

    def _freeze(self) -> None:
        super()._freeze()
        if self.frozen_stages >= 0:  # the stem's bare parameters
            for name in ('cls_token', 'reg_token', 'pos_embed'):
                p = getattr(self.vit, name, None)
                if isinstance(p, nn.Parameter):
                    p.requires_grad = False

    # ---- lr decay -------------------------------------------------------------------------------------
    def param_depth(self, param_name: str, mode: str) -> Tuple[int, int]:
        """layer_wise: stem 0, block i i + 1, the rest (final norm, pyramid, output norms) depth + 1;
        stage_wise: stem 0, the blocks of stage s (4 equal groups) s + 1, the rest 5."""
        parts = param_name.split('.')
        num = self.num_stages + 2 if mode == 'stage_wise' else self.num_blocks + 2
        if parts[0] != 'vit' or len(parts) < 2:
            return num - 1, num
        if parts[1] in STEM_NAMES:
            return 0, num
        if parts[1] == 'blocks':
            block = int(parts[2])
            return (self.block_stage[block] if mode == 'stage_wise' else block) + 1, num
        return num - 1, num
