# Swin-T UperNet 160k on your own segmentation dataset: images and label PNGs with the same file stem
# (images/train/x.jpg <-> annotations/train/x.png), one class index per pixel. Swin-T's ADE20K recipe. Copy this
# file next to it and edit the block "your dataset"; the dataset, the heads and the metric follow it.
# reduce_zero_label: True when 0 in your PNGs means "unlabelled" and your classes are 1..N (ADE20K's layout):
# 0 is then ignored and 1..N are trained as 0..N-1. False when your classes are 0..N-1 and unlabelled pixels
# are 255. Either way `classes` lists the N class names in index order. The metric prints per-class IoU.
_base_ = '../swin/upernet_swin-t-p4-w7_4xb4-160k_ade20k-512x512.py'

# --- your dataset ---
data_root = 'data/my_seg/'
classes = ('class_a', 'class_b', 'class_c')
reduce_zero_label = True
img_suffix, seg_map_suffix = '.jpg', '.png'
train_img, train_seg = 'images/train', 'annotations/train'
val_img, val_seg = 'images/val', 'annotations/val'
# ---

crop_size = (512, 512)
train_pipeline = [
    dict(type='vitdense.LoadImage'),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile', _scope_='vitdense'),  # vitdense.LoadImage, as inferencers name it
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=dict(classes=classes),
               reduce_zero_label=reduce_zero_label, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix)
model = dict(data_preprocessor=dict(size=crop_size), decode_head=dict(num_classes=len(classes)),
             auxiliary_head=dict(num_classes=len(classes)))
train_dataloader = dict(dataset=dict(dataset, _delete_=True, pipeline=train_pipeline,
                                     data_prefix=dict(img_path=train_img, seg_map_path=train_seg)))
val_dataloader = dict(dataset=dict(dataset, _delete_=True, pipeline=test_pipeline,
                                   data_prefix=dict(img_path=val_img, seg_map_path=val_seg)))
test_dataloader = val_dataloader
