"""The params and FLOPs the papers published, keyed by config name, and the config files the tables cover."""
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence


@dataclass(frozen=True)
class Published:
    params_m: float
    gflops: Optional[float]
    source: str


_SWIN = 'Swin paper (arXiv 2103.14030) / microsoft/Swin-Transformer-{Object-Detection,Semantic-Segmentation}'
_CONVNEXT = 'ConvNeXt paper (arXiv 2201.03545) / facebookresearch/ConvNeXt'
_VIT_ADAPTER = 'ViT-Adapter paper (arXiv 2205.08534) / czczup/ViT-Adapter'
# The published params (M) and FLOPs (G, multiply-adds; detection at 1280x800, UperNet at 512x2048,
# classification at 224x224), keyed by config name. Only figures the authors published for that model and
# schedule; other families add theirs here.
PUBLISHED: Dict[str, Published] = {
    'mask-rcnn_swin-t-p4-w7_fpn_1x_coco': Published(48, 267, _SWIN),
    'mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco': Published(48, 267, _SWIN),
    'mask-rcnn_swin-s-p4-w7_fpn_ms-crop-3x_coco': Published(69, 359, _SWIN),
    'mask-rcnn_convnext-t-p4-w7_fpn_ms-crop-3x_coco': Published(48, 262, _CONVNEXT),
    'cascade-mask-rcnn_swin-t-p4-w7_fpn_1x_coco': Published(86, 745, _SWIN),
    'cascade-mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco': Published(86, 745, _SWIN),
    'cascade-mask-rcnn_swin-s-p4-w7_fpn_ms-crop-3x_coco': Published(107, 838, _SWIN),
    'cascade-mask-rcnn_swin-b-p4-w7_fpn_ms-crop-3x_coco': Published(145, 982, _SWIN),
    'cascade-mask-rcnn_convnext-t-p4-w7_fpn_ms-crop-3x_coco': Published(86, 741, _CONVNEXT),
    'cascade-mask-rcnn_convnext-s-p4-w7_fpn_ms-crop-3x_coco': Published(108, 827, _CONVNEXT),
    'cascade-mask-rcnn_convnext-b-p4-w7_fpn_ms-crop-3x_coco': Published(146, 964, _CONVNEXT),
    'upernet_swin-t-p4-w7_4xb4-160k_ade20k-512x512': Published(60, 945, _SWIN),
    'upernet_swin-s-p4-w7_4xb4-160k_ade20k-512x512': Published(81, 1038, _SWIN),
    'upernet_swin-b-p4-w7_4xb4-160k_ade20k-512x512': Published(121, 1188, _SWIN),
    'upernet_convnext-t_4xb4-160k_ade20k-512x512': Published(60, 939, _CONVNEXT),
    'upernet_convnext-s_4xb4-160k_ade20k-512x512': Published(82, 1027, _CONVNEXT),
    'upernet_convnext-b_4xb4-160k_ade20k-512x512': Published(122, 1170, _CONVNEXT),
    'mask-rcnn_vit-adapter-s_fpn_1x_coco': Published(48, None, _VIT_ADAPTER),
    'mask-rcnn_vit-adapter-s_fpn_ms-crop-3x_coco': Published(48, None, _VIT_ADAPTER),
    'mask-rcnn_vit-adapter-b_fpn_1x_coco': Published(120, None, _VIT_ADAPTER),
    'mask-rcnn_vit-adapter-b_fpn_ms-crop-3x_coco': Published(120, None, _VIT_ADAPTER),
    'mask-rcnn_vit-adapter-dinov2-s-p14_fpn_ms-crop-3x_coco': Published(48, None, _VIT_ADAPTER),
    'mask-rcnn_vit-adapter-dinov2-b-p14_fpn_ms-crop-3x_coco': Published(120, None, _VIT_ADAPTER),
    'cascade-mask-rcnn_vit-adapter-s_fpn_ms-crop-3x_coco': Published(86, None, _VIT_ADAPTER),
    'cascade-mask-rcnn_vit-adapter-b_fpn_ms-crop-3x_coco': Published(158, None, _VIT_ADAPTER),
    'upernet_vit-adapter-s_4xb4-160k_ade20k-512x512': Published(58, None, _VIT_ADAPTER),
    'upernet_vit-adapter-b_4xb4-160k_ade20k-512x512': Published(134, None, _VIT_ADAPTER),
    'swin-t-p4-w7_in1k': Published(28, 4.5, _SWIN),  # ImageNet-1k classifiers at 224x224
    'convnext-t_in1k': Published(28, 4.5, _CONVNEXT),
}


def percent_diff(value: float, reference: Optional[float]) -> str:
    if not reference:
        return ''
    return f'{100.0 * (value - reference) / reference:+.1f}%'


def config_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def published_for(path: str) -> Optional[Published]:
    return PUBLISHED.get(config_name(path))


def iter_configs(root: str, include_mini: bool = False, patterns: Optional[Sequence[str]] = None) -> List[str]:
    """Config files under ``root`` (``_base_`` skipped), sorted; mini configs only if asked; with
    ``patterns``, only paths containing one of them."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != '_base_')
        for name in sorted(filenames):
            if not name.endswith('.py'):
                continue
            if not include_mini and '_mini' in name:
                continue
            path = os.path.join(dirpath, name)
            if patterns and not any(p in path for p in patterns):
                continue
            found.append(path)
    return found
