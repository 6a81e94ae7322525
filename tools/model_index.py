"""Write the model index: model-index.yml and one configs/<family>/metafile.yml per family (mmdet's layout).

    python tools/model_index.py            # every config, mini ones included (a few minutes: FLOPs are counted)
    python tools/model_index.py --from-table docs/model_zoo.md   # reuse that table's numbers, count the rest
    python tools/model_index.py --keep-counted                   # after adding a config: count only new ones
    vitdense model-index

Each entry: the config, task, head, backbone, training data, input size, params and FLOPs counted by
tools/model_zoo.py (vitdense.analysis.flops.complexity, at the papers' input sizes), the published params / FLOPs of
vitdense.analysis.published.PUBLISHED and, where the paper reports them for that model and schedule, the paper's accuracy
("Paper Results": the authors' numbers, not measured here; vitdense ships no trained weights).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COLLECTIONS = {
    'boat': ('BOAT', 'BOAT: Bilateral Local Attention Vision Transformer', 'https://arxiv.org/abs/2201.13027'),
    'ceit': ('CeiT', 'Incorporating Convolution Designs into Visual Transformers', 'https://arxiv.org/abs/2103.11816'),
    # templates for a user's own dataset (Swin-T backbones); listed with the paper of their backbone
    'custom': ('Custom', 'Swin Transformer: Hierarchical Vision Transformer using Shifted Windows',
               'https://arxiv.org/abs/2103.14030'),
    'convnext': ('ConvNeXt', 'A ConvNet for the 2020s', 'https://arxiv.org/abs/2201.03545'),
    'sequencer': ('Sequencer', 'Sequencer: Deep LSTM for Image Classification', 'https://arxiv.org/abs/2205.01972'),
    'swin': ('Swin', 'Swin Transformer: Hierarchical Vision Transformer using Shifted Windows',
             'https://arxiv.org/abs/2103.14030'),
    'timm': ('timm', 'PyTorch Image Models (timm)', 'https://github.com/huggingface/pytorch-image-models'),
    'timm_vit': ('TimmViT', 'Exploring Plain Vision Transformer Backbones for Object Detection (ViTDet)',
                 'https://arxiv.org/abs/2203.16527'),
    'vit': ('ViT', 'Exploring Plain Vision Transformer Backbones for Object Detection (ViTDet)',
            'https://arxiv.org/abs/2203.16527'),
    'vit_adapter': ('ViT-Adapter', 'Vision Transformer Adapter for Dense Predictions',
                    'https://arxiv.org/abs/2205.08534'),
    'vit_hybrid': ('ViT-Hybrid', 'An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale',
                   'https://arxiv.org/abs/2010.11929'),
}

# The papers' accuracy for exactly these models and schedules (the figures the configs' first lines quote).
_COCO = 'COCO val2017'
_ADE = 'ADE20K val'
_IN1K = 'ImageNet-1k val'
PAPER_RESULTS = {
    'mask-rcnn_swin-t-p4-w7_fpn_1x_coco': [('Object Detection', _COCO, {'box AP': 43.7}),
                                           ('Instance Segmentation', _COCO, {'mask AP': 39.8})],
    'mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco': [('Object Detection', _COCO, {'box AP': 46.0}),
                                                   ('Instance Segmentation', _COCO, {'mask AP': 41.6})],
    'mask-rcnn_swin-s-p4-w7_fpn_ms-crop-3x_coco': [('Object Detection', _COCO, {'box AP': 48.5}),
                                                   ('Instance Segmentation', _COCO, {'mask AP': 43.3})],
    'mask-rcnn_convnext-t-p4-w7_fpn_ms-crop-3x_coco': [('Object Detection', _COCO, {'box AP': 46.2}),
                                                       ('Instance Segmentation', _COCO, {'mask AP': 41.7})],
    'upernet_swin-t-p4-w7_4xb4-160k_ade20k-512x512': [('Semantic Segmentation', _ADE,
                                                       {'mIoU': 44.5, 'mIoU (ms+flip)': 45.8})],
    'upernet_swin-s-p4-w7_4xb4-160k_ade20k-512x512': [('Semantic Segmentation', _ADE,
                                                       {'mIoU': 47.6, 'mIoU (ms+flip)': 49.5})],
    'upernet_swin-b-p4-w7_4xb4-160k_ade20k-512x512': [('Semantic Segmentation', _ADE,
                                                       {'mIoU': 48.1, 'mIoU (ms+flip)': 49.7})],
    'upernet_convnext-t_4xb4-160k_ade20k-512x512': [('Semantic Segmentation', _ADE,
                                                     {'mIoU': 46.0, 'mIoU (ms+flip)': 46.7})],
    'upernet_convnext-s_4xb4-160k_ade20k-512x512': [('Semantic Segmentation', _ADE,
                                                     {'mIoU': 48.7, 'mIoU (ms+flip)': 49.6})],
    'upernet_convnext-b_4xb4-160k_ade20k-512x512': [('Semantic Segmentation', _ADE,
                                                     {'mIoU': 49.1, 'mIoU (ms+flip)': 49.9})],
    # ViT-Adapter paper (Table 1) / czczup/ViT-Adapter (3x, DINOv2, Cascade, UperNet)
    **{f'{head}_vit-adapter-{size}_fpn_{schedule}_coco': [('Object Detection', _COCO, {'box AP': box}),
                                                          ('Instance Segmentation', _COCO, {'mask AP': mask})]
       for head, size, schedule, box, mask in [
           ('mask-rcnn', 's', '1x', 44.7, 39.9), ('mask-rcnn', 's', 'ms-crop-3x', 48.2, 42.8),
           ('mask-rcnn', 'b', '1x', 47.0, 41.8), ('mask-rcnn', 'b', 'ms-crop-3x', 49.6, 43.6),
           ('mask-rcnn', 'dinov2-s-p14', 'ms-crop-3x', 51.5, 45.6),
           ('mask-rcnn', 'dinov2-b-p14', 'ms-crop-3x', 54.1, 47.8),
           ('cascade-mask-rcnn', 's', 'ms-crop-3x', 51.5, 44.3), ('cascade-mask-rcnn', 'b', 'ms-crop-3x', 52.1, 44.8)]},
    'upernet_vit-adapter-s_4xb4-160k_ade20k-512x512': [('Semantic Segmentation', _ADE,
                                                        {'mIoU': 46.2, 'mIoU (ms)': 47.1})],
    'upernet_vit-adapter-b_4xb4-160k_ade20k-512x512': [('Semantic Segmentation', _ADE,
                                                        {'mIoU': 48.8, 'mIoU (ms)': 49.7})],
    'swin-t-p4-w7_in1k': [('Image Classification', _IN1K, {'Top 1 Accuracy': 81.3})],
    'convnext-t_in1k': [('Image Classification', _IN1K, {'Top 1 Accuracy': 82.1})],
}
TASKS = {'det': ['Object Detection', 'Instance Segmentation'], 'seg': ['Semantic Segmentation'],
         'cls': ['Image Classification']}


def training_data(name: str) -> str:
    for key, data in (('mini-coco-crops', 'mini COCO crops (bundled, data/mini/coco_crops_mini)'),
                      ('mini-coco', 'mini COCO (bundled, data/mini/coco_val2017_mini)'),
                      ('mini-ade20k', 'mini ADE20K (bundled, data/mini/ade20k_mini)'),
                      ('custom-coco', "the user's COCO-format dataset (configs/custom template)"),
                      ('custom-seg', "the user's images + label PNGs (configs/custom template)"),
                      ('_coco', 'COCO train2017'), ('ade20k', 'ADE20K train'), ('in1k', 'ImageNet-1k train')):
        if key in name:
            return data
    raise UserError(f'{name}: no known dataset in the config name (coco, ade20k, in1k, mini-*)')


def entry(row, family: str) -> dict:
    config = os.path.relpath(row['path'], REPO).replace(os.sep, '/')
    if 'error' in row:
        raise UserError(f"{config}: the model could not be counted: {row['error']}")
    metadata = {'Task': list(TASKS[row['task']]), 'Model': row['model'], 'Backbone': row['backbone'],
                'Training Data': training_data(row['name']), 'Input Size': f"{row['shape'][0]}x{row['shape'][1]}",
                'Parameters (M)': round(row['params_m'], 1)}
    if row.get('gflops') is not None:
        metadata['FLOPs (G)'] = round(row['gflops'], 1)
    published = row.get('published')
    if published:
        metadata['Published Parameters (M)'] = published.params_m
        if published.gflops:
            metadata['Published FLOPs (G)'] = published.gflops
        metadata['Published Source'] = published.source
    model = {'Name': row['name'], 'In Collection': COLLECTIONS[family][0], 'Config': config, 'Metadata': metadata}
    if row['name'] in PAPER_RESULTS:
        model['Paper Results'] = [{'Task': task, 'Dataset': data, 'Metrics': metrics}
                                  for task, data, metrics in PAPER_RESULTS[row['name']]]
    return model


def dump_yaml(data, f) -> None:
    """Plain YAML: keys in their order, no anchors / aliases for repeated values."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):
            return True
    yaml.dump(data, f, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=120)


def write_index(rows, root: str = REPO) -> list:
    """Write the metafiles and model-index.yml under ``root``; returns the files written."""
    families = {}
    for row in rows:
        family = os.path.relpath(row['path'], os.path.join(root, 'configs')).split(os.sep)[0]
        if family not in COLLECTIONS:
            raise UserError(f"configs/{family}: no collection (paper) for this family in tools/model_index.py")
        families.setdefault(family, []).append(entry(row, family))
    written = []
    for family, models in sorted(families.items()):
        name, title, url = COLLECTIONS[family]
        path = os.path.join(root, 'configs', family, 'metafile.yml')
        with open(path, 'w') as f:
            f.write('# Written by tools/model_index.py; params / FLOPs counted by vitdense.analysis.\n')
            dump_yaml({'Collections': [{'Name': name, 'Paper': {'Title': title, 'URL': url}}], 'Models': models}, f)
        written.append(path)
    index = os.path.join(root, 'model-index.yml')
    with open(index, 'w') as f:
        f.write('# Written by tools/model_index.py: one metafile per family under configs/.\n')
        dump_yaml({'Import': [f'configs/{family}/metafile.yml' for family in sorted(families)]}, f)
    return written + [index]


def rows_from_table(path: str) -> dict:
    """``{config path: row}`` from a table tools/model_zoo.py wrote (its links are relative to the table)."""
    import re
    from vitdense.analysis.published import published_for
    rows = {}
    cell = re.compile(r'^\[(?P<name>[^\]]+)\]\((?P<link>[^)]+)\)$')
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip('|').split('|')]
            found = cell.match(cells[0]) if line.startswith('| [') else None
            if not found or len(cells) < 9 or cells[4] == 'failed':
                continue
            config = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(path)), found['link']))
            height, width = (int(v) for v in cells[4].split('x'))
            rows[config] = dict(name=found['name'], path=config, task=cells[1], model=cells[2], backbone=cells[3],
                                shape=(height, width), params_m=float(cells[5]), gflops=float(cells[8]),
                                published=published_for(config))
    return rows


def rows_from_index(root: str = REPO) -> dict:
    """``{config path: row}`` from the model index already written under ``root`` (none if there is none)."""
    import yaml
    from vitdense.analysis.published import published_for
    index = os.path.join(root, 'model-index.yml')
    if not os.path.isfile(index):
        return {}
    tasks = {tuple(v): k for k, v in TASKS.items()}
    rows = {}
    for metafile in yaml.safe_load(open(index))['Import']:
        for model in yaml.safe_load(open(os.path.join(root, metafile)))['Models']:
            meta = model['Metadata']
            config = os.path.abspath(os.path.join(root, model['Config']))
            height, width = (int(v) for v in meta['Input Size'].split('x'))
            rows[config] = dict(name=model['Name'], path=config, task=tasks[tuple(meta['Task'])], model=meta['Model'],
                                backbone=meta['Backbone'], shape=(height, width), params_m=meta['Parameters (M)'],
                                gflops=meta.get('FLOPs (G)'), published=published_for(config))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--params-only', action='store_true', help='no FLOPs (faster; the FLOPs fields are left out)')
    parser.add_argument('--from-table', metavar='MD',
                        help='take params / FLOPs of the configs this model-zoo table lists (tools/model_zoo.py '
                             '--out MD) from it, count only the others')
    parser.add_argument('--keep-counted', action='store_true',
                        help='keep the numbers of the configs the current model index already lists, count only '
                             'new configs (after adding a config; recount all when a model changed)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar on stderr')
    args = parser.parse_args(argv)
    from model_zoo import table_rows
    from vitdense.analysis.published import iter_configs
    paths = [os.path.abspath(p) for p in iter_configs(os.path.join(REPO, 'configs'), include_mini=True)]
    known = rows_from_table(args.from_table) if args.from_table else {}
    if args.keep_counted:
        known.update(rows_from_index())
    counted = table_rows([p for p in paths if p not in known], params_only=args.params_only,
                         progress=not args.no_progress)
    by_path = dict(known, **{row['path']: row for row in counted})
    rows = [by_path[p] for p in paths if p in by_path]
    indexed = {row['path'] for row in rows}
    skipped = [p for p in paths if os.path.abspath(p) not in indexed]
    if skipped:
        raise UserError(f'{len(skipped)} configs build no model to count, e.g. {skipped[0]}')
    written = write_index(rows)
    print(f'wrote {len(rows)} models into {len(written)} files', file=sys.stderr)


if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    run_tool(main)
