# Sequencer2D-S UperNet ADE20K 160k with Swin's UperNet recipe (AdamW lr 6e-5, wd 0.01, no decay on norms;
# no published UperNet recipe for Sequencer). Whole-image test: BiLSTM2D has no position table to outgrow.
_base_ = [
    '../_base_/models/upernet_sequencer2d-s.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_160k.py',
    '../_base_/optimizers/adamw_swin-seg.py', '../_base_/default_runtime_seg.py'
]
